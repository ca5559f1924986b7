package main

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestInOrderBodiesNeedNoWeights(t *testing.T) {
	spec := LoadSpec{Bodies: []string{"a", "b", "c"}, InOrder: true}
	body := pickBodies(spec)
	for i, want := range []string{"a", "b", "c", "a"} {
		if got := string(body(i)); got != want {
			t.Fatalf("request %d: body %q, want %q", i, got, want)
		}
	}
}

func TestOpenLoopSendsAtTheGivenArrivalsAndRecordsTheFirstByte(t *testing.T) {
	arrivals := []float64{0, 30, 35, 80}
	spec := LoadSpec{Phase: "open", ArrivalsMs: arrivals, Count: len(arrivals), MaxInflight: 10, DrainMs: 1000}
	if err := spec.checkPhase(); err != nil {
		t.Fatalf("an open phase with arrivals and no rate was refused: %v", err)
	}
	t0 := time.Now()
	var (
		mu     sync.Mutex
		sentAt []float64
	)
	send := func([]byte) (int, time.Time, time.Time, error) {
		mu.Lock()
		sentAt = append(sentAt, ms(time.Since(t0)))
		mu.Unlock()
		first := time.Now().Add(2 * time.Millisecond)
		return 200, first, first.Add(5 * time.Millisecond), nil
	}
	res := openLoop(send, spec, func(int) []byte { return nil })
	if len(res.Samples) != len(arrivals) {
		t.Fatalf("%d samples, want %d", len(res.Samples), len(arrivals))
	}
	for i, s := range res.Samples {
		if s[3] != float64(i) || math.Abs(s[0]-arrivals[i]) > 0.01 {
			t.Errorf("sample %d: index %v at %v ms, want index %d at %v ms", i, s[3], s[0], i, arrivals[i])
		}
		if s[4] < 2 || s[1] < s[4]+4.99 {
			t.Errorf("sample %d: first byte after %v ms and answer after %v ms, want >= 2 and 5 ms later", i, s[4], s[1])
		}
	}
	if last := slices.Max(sentAt); last < 80 {
		t.Errorf("the last request was sent %v ms after the start, before its arrival at 80 ms", last)
	}
}

func TestDecisionOnlyIsRefusedWhereItHasNoMeaning(t *testing.T) {
	for _, spec := range []LoadSpec{
		{Kind: "http", Phase: "closed", DecisionOnly: true},
		{Kind: "extproc", Phase: "closed", DecisionOnly: true, ResponsePhase: true},
	} {
		if spec.checkPhase() == nil {
			t.Fatalf("decisionOnly accepted for %+v", spec)
		}
	}
	if err := (LoadSpec{Kind: "extproc", Phase: "closed", DecisionOnly: true}).checkPhase(); err != nil {
		t.Fatalf("decisionOnly refused for the request phase over ext_proc: %v", err)
	}
}
