// Command gosplit burns CPU with a known call graph and a known time split:
//
//	main.main -> main.loop -> main.hotA (75% of the time)
//	                       -> main.hotB (25% of the time)
//
// hotA and hotB run the same loop, so cost per iteration is equal and the
// 3:1 iteration ratio is a 3:1 time ratio.
//
// Frame pointers: the Go compiler does not set up a frame pointer in a leaf
// function whose frame is empty, and a frame-pointer unwinder sampling inside
// such a function loses its caller (main.loop). The small array in hotA/hotB
// lives on the stack, which gives them a frame and a saved %rbp.
//
// Usage: gosplit [SECONDS [GOROUTINES]]   SECONDS 0 or absent: run until killed.
//
// With GOSPLIT_CPUPROFILE=PATH (and SECONDS > 0) it also writes the Go
// runtime's own CPU profile of the run to PATH: an independent reference for
// the split, and a known-good input for the tests' `go tool pprof` parser.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

// chunk is the iteration count of one hotB call: about a millisecond of work.
const chunk = 1 << 20

var sink uint64

//go:noinline
func hotA(n int, seed uint64) uint64 {
	var acc [4]uint64
	x := seed
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		acc[i&3] = x
	}
	return acc[0] ^ acc[1] ^ acc[2] ^ acc[3]
}

//go:noinline
func hotB(n int, seed uint64) uint64 {
	var acc [4]uint64
	x := seed
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		acc[i&3] = x
	}
	return acc[0] ^ acc[1] ^ acc[2] ^ acc[3]
}

//go:noinline
func loop(deadline time.Time, done chan<- uint64) {
	x := uint64(time.Now().UnixNano())
	for {
		// A random length per round (chunk/8 to 3*chunk/8): a strictly
		// periodic 3:1 loop phase-locks with a 99 Hz sampling clock on a
		// quiet host; the expected split stays exactly 3:1.
		n := chunk/8 + int(x>>40)%(chunk/4)
		x = hotA(3*n, x)
		x = hotB(n, x)
		if !deadline.IsZero() && time.Now().After(deadline) {
			done <- x
			return
		}
	}
}

func main() {
	seconds := 0.0
	workers := 1
	var err error
	if len(os.Args) > 1 {
		if seconds, err = strconv.ParseFloat(os.Args[1], 64); err != nil || seconds < 0 {
			fmt.Fprintf(os.Stderr, "usage: %s [SECONDS [GOROUTINES]]\n", os.Args[0])
			os.Exit(2)
		}
	}
	if len(os.Args) > 2 {
		if workers, err = strconv.Atoi(os.Args[2]); err != nil || workers < 1 {
			fmt.Fprintf(os.Stderr, "usage: %s [SECONDS [GOROUTINES]]\n", os.Args[0])
			os.Exit(2)
		}
	}
	var deadline time.Time
	if seconds > 0 {
		deadline = time.Now().Add(time.Duration(seconds * float64(time.Second)))
	}
	if path := os.Getenv("GOSPLIT_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}()
	}
	done := make(chan uint64, workers)
	for i := 1; i < workers; i++ {
		go loop(deadline, done)
	}
	loop(deadline, done)
	for i := 0; i < workers; i++ {
		sink ^= <-done
	}
}
