package agent

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages gives back the memory start-up touched and serving
// does not use, once the agent is up. Most of an idle agent's resident
// memory is the executable's own code and read-only data (file pages),
// mapped in 64 KiB windows around every page that the flag parsing,
// package initialisation and service set-up touched: one binary is also
// the CLI and the controller. Dropping those mappings costs nothing that
// is lost (they are the file's pages, still in the page cache), and what
// calls use comes back on its first touch. The writable data segment is
// never touched here. The heap start-up left is returned to the system
// first.
func releaseStartupPages() {
	// The collection reads the binary's tables: first, so they can go too.
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00a3b000 r-xp 00000000 fe:00 10011009   /path/to/exe
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
	}
}
