package capture

import "golang.org/x/sys/unix"

// timedSleep holds the system calls of a timed sleep.
var timedSleep = map[int]bool{unix.SYS_NANOSLEEP: true, unix.SYS_CLOCK_NANOSLEEP: true}
