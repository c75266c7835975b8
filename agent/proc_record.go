package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/vtcluster/vtcluster/agent/pgroup"
	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/internal/atomicfile"
)

// ProcessRecordName is the record's file name in the agent's data dir.
const ProcessRecordName = "processes.json"

// maxRecordSize bounds what is read back: MaxBackground groups plus run
// calls in flight, each a few hundred bytes; anything far larger is not a
// record this agent wrote.
const maxRecordSize = 16 << 20

type recordFile struct {
	BootID string          `json:"boot_id"`
	Agent  pgroup.Ident    `json:"agent"` // pid and start time of the writer
	Groups []recordedGroup `json:"groups"`
}

type recordedGroup struct {
	pgroup.Ident
	Owner   string    `json:"owner,omitempty"`
	Argv    []string  `json:"argv"`
	Started time.Time `json:"started"`
}

// The on-node record of the process groups an agent started. The
// parent-death signal kills a group's leader when the agent dies, but not
// the rest of its group; the record lets the next agent on the node stop
// those at start-up. Each group is recorded with its leader's start time,
// so that a pid reused since then is never signalled (pgroup.StopLeftover).
//
// procRecord keeps the file in step with the running groups. A nil
// *procRecord (no RecordFile configured) records nothing.
type procRecord struct {
	path string
	log  *slog.Logger

	mu  sync.Mutex
	rec recordFile
}

// openProcRecord stops what a dead agent's record names, then starts a
// fresh record owned by this process.
func openProcRecord(path string, grace time.Duration, log *slog.Logger) (*procRecord, error) {
	r := &procRecord{path: path, log: log, rec: recordFile{BootID: pgroup.BootID(), Agent: pgroup.Self()}}
	old, err := readRecord(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case old.Agent != r.rec.Agent && pgroup.Alive(old.Agent):
		return nil, fmt.Errorf("another agent (pid %d) runs with this data dir: its process record is %s", old.Agent.Pgid, path)
	case old.BootID != r.rec.BootID:
		// Written before a reboot: nothing it names can still run.
	default:
		for _, g := range old.Groups {
			pids, err := pgroup.StopLeftover(g.Ident, grace)
			if err != nil {
				log.Warn(fmt.Sprintf("cannot stop process group %d left by agent pid %d: %v", g.Pgid, old.Agent.Pgid, err))
				continue
			}
			if len(pids) > 0 {
				log.Warn(fmt.Sprintf("stopped %s left by the previous agent (pid %d): process group %d, pids %v, started %s%s",
					py.Repr(g.Argv), old.Agent.Pgid, g.Pgid, pids, g.Started.Format(time.RFC3339), ownerNote(g.Owner)))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writeLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

func ownerNote(owner string) string {
	if owner == "" {
		return ""
	}
	return ", owner " + py.Repr(owner)
}

func readRecord(path string) (recordFile, error) {
	var rec recordFile
	f, err := os.Open(path)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	b, err := readAllLimited(f, maxRecordSize)
	if err != nil {
		return rec, fmt.Errorf("process record %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("process record %s: %w (remove the file if no agent runs)", path, err)
	}
	return rec, nil
}

func readAllLimited(f *os.File, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%d bytes, more than the %d a record can hold", fi.Size(), limit)
	}
	b := make([]byte, fi.Size())
	_, err = f.ReadAt(b, 0)
	if err != nil && fi.Size() > 0 {
		return nil, err
	}
	return b, nil
}

func (r *procRecord) add(id pgroup.Ident, owner string, argv []string, started time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Groups = append(r.rec.Groups, recordedGroup{Ident: id, Owner: owner, Argv: argv, Started: started.UTC()})
	r.save()
}

func (r *procRecord) remove(pgid int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Groups = slices.DeleteFunc(r.rec.Groups, func(g recordedGroup) bool { return g.Pgid == pgid })
	r.save()
}

// save writes the record, logging a failure: a command must not fail
// because the record could not be kept, but an operator must know.
func (r *procRecord) save() {
	if err := r.writeLocked(); err != nil {
		r.log.Error("cannot update the process record", "err", err)
	}
}

// writeLocked replaces the file atomically, so a crash leaves the old or
// the new record, never half of one.
func (r *procRecord) writeLocked() error {
	b, err := json.MarshalIndent(r.rec, "", "  ")
	if err != nil {
		return err
	}
	// Not durable: after a reboot every recorded process is gone anyway,
	// and an fsync on each process start would slow every call.
	if err := atomicfile.WriteFile(r.path, append(b, '\n'), 0o600, atomicfile.NotDurable()); err != nil {
		return fmt.Errorf("process record: %w", err)
	}
	return nil
}

// close removes the record once every group has been reaped: a clean
// shutdown leaves nothing for the next agent to stop.
func (r *procRecord) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rec.Groups) == 0 {
		os.Remove(r.path)
	}
}
