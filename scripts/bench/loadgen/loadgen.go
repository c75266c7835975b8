// Package loadgen holds what the load generators of `make bench-compare`
// (rpcload, logload) measure alike: the wall time of a run and the
// generator's own CPU time, so a reader can see how much of the machine the
// load took from the server under test, and the one JSON line they print.
package loadgen

import (
	"encoding/json"
	"fmt"
	"syscall"
	"time"
)

// Cost is what a run took, as both generators report it.
type Cost struct {
	Seconds          float64 `json:"seconds"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
}

// Meter measures a Cost from its start.
type Meter struct {
	start time.Time
	cpu0  float64
}

// Start starts a Meter now.
func Start() Meter { return Meter{start: time.Now(), cpu0: cpuSeconds()} }

// Started is when the Meter started.
func (m Meter) Started() time.Time { return m.start }

// Until is the Cost from the start to end (wall time) and to now (CPU time).
func (m Meter) Until(end time.Time) Cost {
	return Cost{Seconds: end.Sub(m.start).Seconds(), ClientCPUSeconds: cpuSeconds() - m.cpu0}
}

// Stop is the Cost from the start to now.
func (m Meter) Stop() Cost { return m.Until(time.Now()) }

// PrintResult prints v as the one JSON line the benchmark scripts read.
func PrintResult(v any) {
	line, _ := json.Marshal(v) // the results are plain structs of numbers and strings
	fmt.Println(string(line))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0 // cannot happen for RUSAGE_SELF; 0 reads as "unknown"
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
