package agent

import "golang.org/x/sys/unix"

// unameMachine returns uname(2)'s machine field ("x86_64", "aarch64",
// "ppc64le", "s390x"), which is what Python's platform.machine() reports.
func unameMachine() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Machine[:]), nil
}
