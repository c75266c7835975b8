package testbin

import "testing"

func TestStartedByGoTest(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{"/tmp/go-build1/b001/bridge.test"}, true},
		{[]string{"/tmp/b001/bridge.test", "-test.paniconexit0", "-test.timeout=10m0s"}, true},
		{[]string{"./bridge.test", "--test.run", "TestX"}, true},
		// What the holder start made of it, and a sync alias.
		{[]string{"/tmp/b001/bridge.test", "hooks", "holder", "--job-id", "j"}, false},
		{[]string{"/tmp/b001/bridge.test", "--state-dir", "/s", "status"}, false},
		{[]string{"/x/bin/lava-send", "k"}, false},
		{[]string{"/usr/bin/vtcluster"}, false},
		{nil, false},
	} {
		if got := startedByGoTest(c.argv); got != c.want {
			t.Errorf("startedByGoTest(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}
