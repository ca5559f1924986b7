// loadgen: the load generator of bench/picker part (a). It reads one phase's spec as JSON on
// stdin, sends the requests — plain HTTP to a URL, or as Envoy would with an ext_proc server in
// FULL_DUPLEX_STREAMED mode (decision, request to the chosen endpoint, and optionally the
// response phase; Envoy's side is hack/envoy-side's package exchange, which the picker's
// integration tests use too) — and prints the samples as one JSON object. It is written in Go so
// that the load generator neither stalls in a JavaScript garbage collector nor spends the
// machine's cores on grpc-js, which real Envoy (C++) does not: what is measured is the server
// under test. Built by hack/build-binaries.sh with hack/envoy-side.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"modelrollout.local/envoy-side/exchange"
)

// LoadSpec is one phase.
type LoadSpec struct {
	// "http": POST to URL. "extproc": Envoy's side against the ext_proc server at Addr, the
	// request path Path, the request then sent to the endpoint the server chose.
	Kind          string `json:"kind"`
	URL           string `json:"url"`
	Addr          string `json:"addr"`
	Path          string `json:"path"`
	ResponsePhase bool   `json:"responsePhase"`
	// DecisionOnly (extproc, without the response phase): the exchange ends at the picker's
	// decision; nothing is sent to the endpoint. A request counts 200 when a destination was set.
	// What is measured is then the picker alone, not the pods behind it.
	DecisionOnly bool `json:"decisionOnly"`
	// Each request's body is one of Bodies, drawn with these Weights (seeded: the same mix on
	// every path); with InOrder, request i's body is Bodies[i % len(Bodies)] (no weights needed).
	Bodies  []string  `json:"bodies"`
	Weights []float64 `json:"weights"`
	Seed    int64     `json:"seed"`
	InOrder bool      `json:"inOrder"`
	// Optional: request headers sent with every request (e.g. x-gateway-inference-objective).
	Headers map[string]string `json:"headers,omitempty"`
	// Sent back to back with 16 in flight before the phase, not recorded (connections, caches).
	WarmupRequests int `json:"warmupRequests"`
	// "single": Count requests one at a time. "open": Count requests at Rate per second, each on
	// schedule whatever happened to the earlier ones (at most MaxInflight at once; the phase ends
	// DrainMs after the last arrival at the latest). "closed": Concurrency senders back to back
	// for DurationMs.
	Phase       string  `json:"phase"`
	Count       int     `json:"count"`
	Rate        float64 `json:"rate"`
	MaxInflight int     `json:"maxInflight"`
	DrainMs     float64 `json:"drainMs"`
	Concurrency int     `json:"concurrency"`
	DurationMs  float64 `json:"durationMs"`
	TimeoutMs   float64 `json:"timeoutMs"`
	// An open phase with ArrivalsMs sends request i at ArrivalsMs[i] after the start (ascending;
	// e.g. Poisson arrivals) instead of at i / Rate; Count and Rate are then not needed.
	ArrivalsMs []float64 `json:"arrivalsMs"`
}

// LoadSample is one request: [intended start in ms after the phase began, latency in ms from the
// intended start (single, closed: from the actual start; -1 when never sent or never answered),
// HTTP status or 0, the request's index, time to the answer body's first byte from the same start
// (-1 when none arrived)]. Samples come in the order of their starts.
type LoadSample [5]float64

// LoadResult is what the benchmark reads back.
type LoadResult struct {
	Samples []LoadSample `json:"samples"`
	// Requests never sent (the in-flight limit) or never answered within the drain time.
	Unsent     int      `json:"unsent"`
	Unanswered int      `json:"unanswered"`
	Errors     []string `json:"errors"`
	Seconds    float64  `json:"seconds"`
	// How late the open loop started its requests (from the intended start to the moment the
	// request's sender began): the load generator's own stalls, which the latencies include.
	SendLateP99Ms float64 `json:"sendLateP99Ms"`
	SendLateMaxMs float64 `json:"sendLateMaxMs"`
}

func main() {
	if err := runLoad(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

func runLoad(in io.Reader, out io.Writer) error {
	var spec LoadSpec
	if err := json.NewDecoder(in).Decode(&spec); err != nil {
		return fmt.Errorf("reading the spec: %w", err)
	}
	if len(spec.Bodies) == 0 || (!spec.InOrder && len(spec.Weights) != len(spec.Bodies)) {
		return errors.New("the spec needs bodies and one weight per body (or inOrder)")
	}
	if len(spec.ArrivalsMs) > 0 {
		spec.Count = len(spec.ArrivalsMs)
	}
	if err := spec.checkPhase(); err != nil {
		return err
	}
	send, closeSender, err := newSender(spec)
	if err != nil {
		return err
	}
	defer closeSender()
	if spec.WarmupRequests > 0 {
		closedLoop(send, 16, 0, spec.WarmupRequests, pickBodies(spec))
	}
	var res *LoadResult
	switch spec.Phase {
	case "single":
		res = closedLoop(send, 1, 0, spec.Count, pickBodies(spec))
	case "closed":
		res = closedLoop(send, spec.Concurrency, time.Duration(spec.DurationMs*float64(time.Millisecond)), 0, pickBodies(spec))
	case "open":
		res = openLoop(send, spec, pickBodies(spec))
	}
	return json.NewEncoder(out).Encode(res)
}

// checkPhase refuses a phase that cannot run, before anything is sent.
func (spec LoadSpec) checkPhase() error {
	if spec.DecisionOnly && (spec.Kind != "extproc" || spec.ResponsePhase) {
		return errors.New("decisionOnly needs kind extproc without the response phase")
	}
	switch spec.Phase {
	case "single", "closed":
		return nil
	case "open":
		if (len(spec.ArrivalsMs) == 0 && (spec.Rate <= 0 || spec.Count <= 0)) || spec.MaxInflight <= 0 {
			return errors.New("an open phase needs rate and count (or arrivalsMs), and maxInflight above 0")
		}
		return nil
	}
	return fmt.Errorf("phase must be single, open or closed, got %q", spec.Phase)
}

// sender sends one request and returns its status (0 when it failed), when the first byte of the
// answer body arrived (zero when none did) and when the client had the whole answer.
type sender func(body []byte) (status int, firstByteAt, answeredAt time.Time, err error)

func newSender(spec LoadSpec) (sender, func(), error) {
	timeout := time.Duration(spec.TimeoutMs * float64(time.Millisecond))
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	// Kept-alive HTTP/1.1 connections, as many as requests in flight (Go keeps 2 idle by default).
	upstream := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Minute,
	}, Timeout: timeout}
	switch spec.Kind {
	case "http":
		return func(body []byte) (int, time.Time, time.Time, error) {
			return post(upstream, spec.URL, body, spec.Headers)
		}, upstream.CloseIdleConnections, nil
	case "extproc":
		conn, err := grpc.NewClient(spec.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		client := extprocv3.NewExternalProcessorClient(conn)
		return func(body []byte) (int, time.Time, time.Time, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			var firstByteAt, answeredAt time.Time
			res, err := exchange.Run(ctx, client, upstream, exchange.Options{
				BodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, Path: spec.Path, Body: body, Forward: !spec.DecisionOnly,
				ResponsePhase: spec.ResponsePhase, Answered: func() { answeredAt = time.Now() },
				FirstByte: func() { firstByteAt = time.Now() },
				Headers:   spec.Headers,
			})
			switch {
			case err != nil:
				return 0, firstByteAt, time.Now(), err
			case res.Immediate:
				return res.ImmediateStatus, firstByteAt, time.Now(), fmt.Errorf("immediate response %d: %s", res.ImmediateStatus, res.ImmediateBody)
			case spec.DecisionOnly && res.SetHeaders[exchange.DestinationHeader] == "":
				return 0, firstByteAt, answeredAt, errors.New("a decision without a destination")
			case spec.DecisionOnly:
				return http.StatusOK, firstByteAt, answeredAt, nil
			case res.UpstreamStatus != http.StatusOK:
				return res.UpstreamStatus, firstByteAt, answeredAt, fmt.Errorf("status %d from %s", res.UpstreamStatus, res.SetHeaders[exchange.DestinationHeader])
			}
			return res.UpstreamStatus, firstByteAt, answeredAt, nil
		}, func() { conn.Close(); upstream.CloseIdleConnections() }, nil
	}
	return nil, nil, fmt.Errorf("kind must be http or extproc, got %q", spec.Kind)
}

func post(client *http.Client, url string, body []byte, headers map[string]string) (int, time.Time, time.Time, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, time.Time{}, time.Now(), err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, time.Time{}, time.Now(), err
	}
	var firstByteAt time.Time
	first := make([]byte, 1)
	n, err := io.ReadFull(res.Body, first)
	if n > 0 {
		firstByteAt = time.Now()
	}
	if err == nil {
		_, err = io.Copy(io.Discard, res.Body)
	} else if errors.Is(err, io.EOF) {
		err = nil // an empty body
	}
	res.Body.Close()
	if err != nil {
		return 0, firstByteAt, time.Now(), err
	}
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, firstByteAt, time.Now(), fmt.Errorf("status %d from %s", res.StatusCode, url)
	}
	return res.StatusCode, firstByteAt, time.Now(), nil
}

// pickBodies returns the body of request i: drawn once per phase from a seeded sequence, or
// Bodies[i] in order.
func pickBodies(spec LoadSpec) func(i int) []byte {
	bodies := make([][]byte, len(spec.Bodies))
	for i, b := range spec.Bodies {
		bodies[i] = []byte(b)
	}
	if spec.InOrder {
		return func(i int) []byte { return bodies[i%len(bodies)] }
	}
	total := 0.0
	for _, w := range spec.Weights {
		total += w
	}
	random := rand.New(rand.NewSource(spec.Seed))
	var mu sync.Mutex
	return func(int) []byte {
		mu.Lock()
		x := random.Float64() * total
		mu.Unlock()
		for i, w := range spec.Weights {
			if x < w {
				return bodies[i]
			}
			x -= w
		}
		return bodies[len(bodies)-1]
	}
}

// recorder collects a phase's samples, how late the open loop started its requests, and the
// first few distinct error messages.
type recorder struct {
	t0       time.Time
	mu       sync.Mutex
	samples  []LoadSample
	seen     map[int]bool
	lateMs   []float64
	messages []string
}

func newRecorder() *recorder { return &recorder{t0: time.Now(), seen: map[int]bool{}} }

func (r *recorder) note(err error) {
	if err != nil && len(r.messages) < 5 && !slices.Contains(r.messages, err.Error()) {
		r.messages = append(r.messages, err.Error())
	}
}

// add records request i, started (or due) at start, its first answer byte at firstByte (zero:
// none) and answered at end.
func (r *recorder) add(i int, start, firstByte, end time.Time, status int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	firstByteMs := -1.0
	if !firstByte.IsZero() {
		firstByteMs = ms(firstByte.Sub(start))
	}
	r.samples = append(r.samples, LoadSample{ms(start.Sub(r.t0)), ms(end.Sub(start)), float64(status), float64(i), firstByteMs})
	r.seen[i] = true
	r.note(err)
}

// lost records request i, due at start, as never sent or never answered.
func (r *recorder) lost(i int, start time.Time, why error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lostLocked(i, start, why)
}

func (r *recorder) lostLocked(i int, start time.Time, why error) {
	r.samples = append(r.samples, LoadSample{ms(start.Sub(r.t0)), -1, 0, float64(i), -1})
	r.seen[i] = true
	r.note(why)
}

// loseUnseen records every request of 0..count-1 without a sample yet as lost; it returns how many.
func (r *recorder) loseUnseen(count int, due func(int) time.Time, why error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i := 0; i < count; i++ {
		if !r.seen[i] {
			r.lostLocked(i, due(i), why)
			n++
		}
	}
	return n
}

// started records how late a request due at due began to be sent.
func (r *recorder) started(due time.Time) {
	late := ms(time.Since(due))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lateMs = append(r.lateMs, late)
}

// result is what was recorded so far, samples in the order of their starts (requests still in
// flight may add more afterwards, to the recorder only).
func (r *recorder) result() *LoadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	samples := slices.Clone(r.samples)
	slices.SortFunc(samples, func(a, b LoadSample) int { return cmp.Compare(a[0], b[0]) })
	res := &LoadResult{Samples: samples, Errors: slices.Clone(r.messages), Seconds: time.Since(r.t0).Seconds()}
	late := slices.Clone(r.lateMs)
	slices.Sort(late)
	if len(late) > 0 {
		res.SendLateP99Ms = late[int(0.99*float64(len(late)-1))]
		res.SendLateMaxMs = late[len(late)-1]
	}
	return res
}

// closedLoop runs `concurrency` senders back to back until `count` requests were sent (count > 0)
// or for `duration`; latencies are from each request's actual start.
func closedLoop(send sender, concurrency int, duration time.Duration, count int, body func(int) []byte) *LoadResult {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	rec := newRecorder()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if (count > 0 && i >= count) || (count == 0 && time.Since(rec.t0) >= duration) {
					return
				}
				start := time.Now()
				status, firstByte, end, err := send(body(i))
				rec.add(i, start, firstByte, end, status, err)
			}
		}()
	}
	wg.Wait()
	return rec.result()
}

// openLoop sends request i at i / rate seconds after the start; its latency counts from then, so
// that a stall anywhere (the load generator's own included) shows in the latencies. Every request
// gets a sample: one never sent (MaxInflight in flight) or not answered within DrainMs after the
// last was due counts as failed.
func openLoop(send sender, spec LoadSpec, body func(int) []byte) *LoadResult {
	var (
		inflight atomic.Int64
		wg       sync.WaitGroup
		unsent   int
	)
	interval := time.Duration(0)
	if spec.Rate > 0 {
		interval = time.Duration(float64(time.Second) / spec.Rate)
	}
	// The sending loop sleeps in nanosleep(2) on a thread of its own: Go's timers wake about a
	// millisecond late (they wait in epoll with a timeout in milliseconds), the kernel's in tens
	// of microseconds, and a sleeping thread costs no CPU.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rec := newRecorder()
	due := func(i int) time.Time { return rec.t0.Add(time.Duration(i) * interval) }
	if len(spec.ArrivalsMs) > 0 {
		due = func(i int) time.Time {
			return rec.t0.Add(time.Duration(spec.ArrivalsMs[i] * float64(time.Millisecond)))
		}
	}
	for i := 0; i < spec.Count; i++ {
		for wait := time.Until(due(i)); wait > 0; wait = time.Until(due(i)) {
			ts := syscall.NsecToTimespec(int64(wait))
			_ = syscall.Nanosleep(&ts, nil) // EINTR (a signal): sleep again for the rest
		}
		if int(inflight.Load()) >= spec.MaxInflight {
			rec.started(due(i))
			rec.lost(i, due(i), fmt.Errorf("not sent: %d requests in flight", spec.MaxInflight))
			unsent++
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer inflight.Add(-1)
			rec.started(due(i))
			status, firstByte, end, err := send(body(i))
			rec.add(i, due(i), firstByte, end, status, err)
		}(i)
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Duration(spec.DrainMs * float64(time.Millisecond))):
	}
	unanswered := rec.loseUnseen(spec.Count, due,
		fmt.Errorf("not answered within %v", time.Duration(spec.DrainMs*float64(time.Millisecond))))
	res := rec.result()
	res.Unsent, res.Unanswered = unsent, unanswered
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
