// Command goleak allocates at a steady rate through one function:
//
//	main.main -> main.leakLoop -> main.leak   make([]byte, SIZE), kept
//
// In "leak" mode every block stays reachable (a pre-sized slice holds them),
// so the heap only grows and the garbage collector frees nothing. In "churn"
// mode only the last 1024 blocks are kept and the rest become garbage, which
// is what an ordinary allocation-heavy Go service looks like.
//
// SIZE picks the runtime path: up to 32 KiB an object comes from a size-class
// span that the per-P cache refills (runtime.(*mcache).refill, one call per
// span); above, each object is a large allocation
// (runtime.(*mcache).allocLarge, one call per object).
//
// Every 10 ms it allocates RATE/100 bytes and appends
// `CLOCK_REALTIME-ns total-bytes` to LOG, so a test can compute what was
// allocated in any time window. The log lines are built without allocating,
// so the blocks are all the process allocates while it runs. Allocation stops
// after LIMIT bytes.
//
// With RATE 0 it allocates as fast as it can (a benchmark load), logging the
// running total every 10 ms all the same.
//
// Usage: goleak LOG [SIZE [RATE [LIMIT [leak|churn]]]]
// Defaults: 1024 16777216 1073741824 leak.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var (
	keep  [][]byte
	ring  [1024][]byte
	churn bool
	total uint64
)

//go:noinline
func leak(size int) {
	b := make([]byte, size)
	// Touch every page, as a real user of the memory would.
	for i := 0; i < size; i += 4096 {
		b[i] = 1
	}
	if churn {
		ring[total/uint64(size)%uint64(len(ring))] = b
	} else {
		keep = append(keep, b)
	}
}

//go:noinline
func leakLoop(log *os.File, size int, rate, limit uint64) {
	line := make([]byte, 0, 64)
	next := time.Now()
	var owed uint64
	for {
		if rate == 0 {
			stop := time.Now().Add(10 * time.Millisecond)
			for time.Now().Before(stop) && total+uint64(size) <= limit {
				for i := 0; i < 64; i++ {
					leak(size)
					total += uint64(size)
				}
			}
		} else {
			// What is owed carries over, so the rate holds whatever SIZE is.
			owed += rate / 100
			for owed >= uint64(size) && total+uint64(size) <= limit {
				leak(size)
				total += uint64(size)
				owed -= uint64(size)
			}
		}
		line = strconv.AppendInt(line[:0], time.Now().UnixNano(), 10)
		line = append(line, ' ')
		line = strconv.AppendUint(line, total, 10)
		line = append(line, '\n')
		if _, err := log.Write(line); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			os.Exit(1)
		}
		if rate != 0 {
			next = next.Add(10 * time.Millisecond)
			time.Sleep(time.Until(next))
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goleak LOG [SIZE [RATE [LIMIT [leak|churn]]]]")
		os.Exit(2)
	}
	num := func(i int, def uint64) uint64 {
		if len(os.Args) <= i {
			return def
		}
		v, err := strconv.ParseUint(os.Args[i], 0, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: bad number %q\n", os.Args[i])
			os.Exit(2)
		}
		return v
	}
	size := int(num(2, 1024))
	rate := num(3, 16<<20)
	limit := num(4, 1<<30)
	churn = len(os.Args) > 5 && os.Args[5] == "churn"
	if size <= 0 {
		fmt.Fprintln(os.Stderr, "goleak: SIZE must be positive")
		os.Exit(2)
	}
	log, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		os.Exit(1)
	}
	if !churn {
		keep = make([][]byte, 0, limit/uint64(size)+1)
	}
	leakLoop(log, size, rate, limit)
}
