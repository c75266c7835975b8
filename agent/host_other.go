//go:build !linux

package agent

import "runtime"

// unameMachine approximates platform.machine() where the agent is only
// built, not deployed: nodes run Linux.
func unameMachine() (string, error) {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64", nil
	case "arm64":
		return "arm64", nil
	}
	return runtime.GOARCH, nil
}
