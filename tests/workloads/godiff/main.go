// Command godiff burns CPU in phases whose hot function changes, so
// `stackwatch diff` has a known answer:
//
//	main.main -> main.phase -> main.alpha
//	                        -> main.beta
//
// Each phase is HOT:SECONDS[:PROFILE]. In a phase, the HOT function (alpha
// or beta) does three times the work of the other (they run the same loop,
// so work is time), and with PROFILE the phase writes the Go runtime's own
// CPU profile of itself there (runtime/pprof, gzip-compressed
// profile.proto). SECONDS 0 runs the phase until killed.
//
//	godiff alpha:1.5:phase1.pb.gz beta:1:phase2.pb.gz
//
// alpha and beta keep a small array on the stack so they get a frame
// pointer (see gosplit's notes): a frame-pointer unwinder then sees phase.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// chunk is the iteration count of one cold call: about a millisecond of work.
const chunk = 1 << 20

var sink uint64

//go:noinline
func alpha(n int, seed uint64) uint64 {
	var acc [4]uint64
	x := seed
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		acc[i&3] = x
	}
	return acc[0] ^ acc[1] ^ acc[2] ^ acc[3]
}

//go:noinline
func beta(n int, seed uint64) uint64 {
	var acc [4]uint64
	x := seed
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		acc[i&3] = x
	}
	return acc[0] ^ acc[1] ^ acc[2] ^ acc[3]
}

//go:noinline
func phase(hot string, deadline time.Time) {
	x := uint64(time.Now().UnixNano())
	a, b := 3*chunk, chunk
	if hot == "beta" {
		a, b = chunk, 3*chunk
	}
	for deadline.IsZero() || time.Now().Before(deadline) {
		x = alpha(a, x)
		x = beta(b, x)
	}
	sink ^= x
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s alpha|beta:SECONDS[:PROFILE]...\n", os.Args[0])
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	for _, arg := range os.Args[1:] {
		parts := strings.SplitN(arg, ":", 3)
		if len(parts) < 2 || (parts[0] != "alpha" && parts[0] != "beta") {
			usage()
		}
		seconds, err := strconv.ParseFloat(parts[1], 64)
		if err != nil || seconds < 0 {
			usage()
		}
		var deadline time.Time
		if seconds > 0 {
			deadline = time.Now().Add(time.Duration(seconds * float64(time.Second)))
		}
		var f *os.File
		if len(parts) == 3 {
			if f, err = os.Create(parts[2]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		phase(parts[0], deadline)
		if f != nil {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
}
