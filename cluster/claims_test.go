package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestAllocate_reserveRecordsClaimsAtomically: the claims and the resource
// record are saved in the same Update as the nodes, and a failing Reserve
// leaves neither nodes nor records behind.
func TestAllocate_reserveRecordsClaimsAtomically(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 2)
	ctx := context.Background()
	boom := errors.New("no pool fits")
	_, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a"},
		Reserve: func(s *State, p *Partition) error {
			s.Resources = json.RawMessage(`{"x":1}`)
			p.Claims = append(p.Claims, Claim{Kind: "resource", ID: "r0"})
			return boom
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the reserve error", err)
	}
	s, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Partitions) != 0 || len(s.Resources) != 0 {
		t.Fatalf("a failed reserve left state behind: %+v %s", s.Partitions, s.Resources)
	}

	p, err := Allocate(ctx, st, AllocRequest{Owner: testOwner(t), Tags: []string{"a", "b"},
		Reserve: func(s *State, p *Partition) error {
			s.Resources = json.RawMessage(`{"resources":["r1"]}`)
			p.Claims = append(p.Claims, Claim{Kind: "resource", ID: "r1", Node: p.Nodes[0].Node, Spec: json.RawMessage(`{"pool":"p"}`)})
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	s, err = st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Partition(p.ID)
	if got == nil || len(got.Claims) != 1 || got.Claims[0].ID != "r1" || string(got.Claims[0].Spec) != `{"pool":"p"}` {
		t.Fatalf("stored partition claims = %+v", got)
	}
	if string(s.Resources) != `{"resources":["r1"]}` {
		t.Errorf("resources = %s", s.Resources)
	}
}

// TestReclaim_movesClaimsToReleased: a dead owner's claims are not lost
// with its partition; they wait in State.Released for their package.
func TestReclaim_movesClaimsToReleased(t *testing.T) {
	st := newTestStore(t)
	registerNodes(t, st, 1)
	ctx := context.Background()
	remote := Owner{Host: "elsewhere.invalid", PID: 1, JobID: "j1"}
	p, err := Allocate(ctx, st, AllocRequest{Owner: remote, Tags: []string{"a"}, Lease: 5 * time.Millisecond,
		Reserve: func(s *State, p *Partition) error {
			p.Claims = []Claim{{Kind: "resource", ID: "vol"}, {Kind: "other", ID: "x"}}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(p.Expires) + 5*time.Millisecond)
	if _, err := Reclaim(ctx, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	var taken []ReleasedClaim
	err = st.Update(ctx, func(s *State) error {
		taken = s.TakeReleased("resource")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(taken) != 1 || taken[0].ID != "vol" || taken[0].Partition != p.ID || taken[0].Owner.JobID != "j1" || taken[0].Reason != "lease expired" {
		t.Fatalf("taken = %+v", taken)
	}
	s, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Released) != 1 || s.Released[0].Kind != "other" {
		t.Errorf("left released = %+v, want only the other kind", s.Released)
	}
}

func TestState_validateRefusesBadClaims(t *testing.T) {
	s := NewState()
	s.Released = []ReleasedClaim{{Claim: Claim{Kind: "resource"}}}
	if err := s.validate(); err == nil {
		t.Error("a claim without an id was accepted")
	}
	s.Released = nil
	s.Resources = json.RawMessage(`{`)
	if err := s.validate(); err == nil {
		t.Error("invalid resources JSON was accepted")
	}
}
