package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig: no config text panics the loader, and every refusal is
// made of *ConfigError values.
func FuzzLoadConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "cluster", "*.json"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "cluster.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &configLoader{file: path, dir: dir, data: data}
		cfg := l.load()
		if len(l.errs) > 0 {
			for _, err := range l.errs {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
				}
			}
			return
		}
		if cfg == nil {
			t.Fatal("no config and no error")
		}
	})
}
