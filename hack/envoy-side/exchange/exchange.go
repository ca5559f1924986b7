// Package exchange plays Envoy's side of one ext_proc exchange against an Endpoint Picker, with
// the Go types that go-control-plane generates from Envoy's own API: the request's headers and
// body in BUFFERED or FULL_DUPLEX_STREAMED mode, the picker's decision, optionally the request to
// the chosen endpoint and its answer through the response phase. Used by envoy-side (the picker's
// integration tests) and by bench/loadgen (bench/picker's load generator).
package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Result is what the caller reads back.
type Result struct {
	// Immediate response instead of a decision (an error of the picker).
	ImmediateStatus int    `json:"immediateStatus,omitempty"`
	ImmediateBody   string `json:"immediateBody,omitempty"`
	// The decision: headers set on the request, the destination in the dynamic metadata, and
	// the body Envoy would send upstream.
	SetHeaders          map[string]string `json:"setHeaders,omitempty"`
	RemoveHeaders       []string          `json:"removeHeaders,omitempty"`
	ClearRouteCache     bool              `json:"clearRouteCache"`
	MetadataDestination string            `json:"metadataDestination,omitempty"`
	Body                string            `json:"body,omitempty"`
	BodyChunks          int               `json:"bodyChunks"`
	// With -forward: the endpoint's answer and what the picker handed back in the response phase.
	UpstreamStatus int    `json:"upstreamStatus,omitempty"`
	ResponseBody   string `json:"responseBody,omitempty"`
	// An ImmediateResponse ended the exchange (its status may be missing, so not only the code).
	Immediate bool `json:"-"`
}

// DestinationHeader carries the endpoint the picker chose.
const DestinationHeader = "x-gateway-destination-endpoint"

func header(key, value string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: key, RawValue: []byte(value)}
}

// Options say what one exchange does: the request's path and body, the body mode, whether the
// request goes on to the chosen endpoint, and whether its answer runs through the response phase
// (Envoy configured with response headers and body SKIP when not).
type Options struct {
	BodyMode      filterv3.ProcessingMode_BodySendMode
	Path          string
	Body          []byte
	Forward       bool
	ResponsePhase bool
	// Answered, when set, is called when Envoy would have the whole answer for its client, before
	// the stream is closed (the closing handshake is not the client's wait).
	Answered func()
	// FirstByte, when set, is called when the first byte of the chosen endpoint's answer body
	// arrives (a streamed answer's time to first token, as Envoy sees it).
	FirstByte func()
	// Headers, when set, are sent with the request headers too (e.g. the objective header).
	Headers map[string]string
}

// Run plays one request's ext_proc stream on client; upstream carries the forwarded request.
func Run(ctx context.Context, client extprocv3.ExternalProcessorClient, upstream *http.Client,
	o Options) (*Result, error) {
	bodyMode, path, body := o.BodyMode, o.Path, o.Body
	buffered := bodyMode == filterv3.ProcessingMode_BUFFERED
	responseMode := filterv3.ProcessingMode_NONE
	if o.ResponsePhase {
		responseMode = bodyMode
	}
	stream, err := client.Process(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{SetHeaders: map[string]string{}}

	send := func(r *extprocv3.ProcessingRequest) error { return stream.Send(r) }
	// recv returns the next response, or nil after an ImmediateResponse (recorded in res).
	recv := func() (*extprocv3.ProcessingResponse, error) {
		r, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if ir := r.GetImmediateResponse(); ir != nil {
			res.Immediate = true
			res.ImmediateStatus = int(ir.GetStatus().GetCode())
			res.ImmediateBody = string(ir.GetBody())
			return nil, nil
		}
		return r, nil
	}
	decision := func(c *extprocv3.CommonResponse, r *extprocv3.ProcessingResponse) {
		for _, h := range c.GetHeaderMutation().GetSetHeaders() {
			v := string(h.GetHeader().GetRawValue())
			if v == "" {
				v = h.GetHeader().GetValue()
			}
			res.SetHeaders[h.GetHeader().GetKey()] = v
		}
		res.RemoveHeaders = append(res.RemoveHeaders, c.GetHeaderMutation().GetRemoveHeaders()...)
		res.ClearRouteCache = res.ClearRouteCache || c.GetClearRouteCache()
		// Where the upstream gateways read the destination from (namespace envoy.lb).
		lb := r.GetDynamicMetadata().GetFields()["envoy.lb"].GetStructValue()
		if v := lb.GetFields()[DestinationHeader].GetStringValue(); v != "" {
			res.MetadataDestination = v
		}
	}

	headers := []*corev3.HeaderValue{
		header(":method", "POST"), header(":path", path), header(":authority", "gateway"),
		header("content-type", "application/json"), header("content-length", strconv.Itoa(len(body))),
	}
	for k, v := range o.Headers {
		headers = append(headers, header(k, v))
	}
	err = send(&extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: headers},
		}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: bodyMode, ResponseBodyMode: responseMode},
	})
	if err != nil {
		return nil, err
	}
	if buffered {
		// Envoy waits for the headers response before it sends a buffered body.
		r, err := recv()
		if err != nil || r == nil {
			return res, err
		}
		if r.GetRequestHeaders() == nil {
			return nil, fmt.Errorf("expected a request_headers response, got %v", r)
		}
	}
	if err := send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true},
	}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// io.EOF: the server already ended the stream (an ImmediateResponse to the headers, as Envoy
	// allows at any point); the answer is read below.
	// The decision rides on the request_body response when buffered; in full duplex on the
	// headers response, and the body follows as streamed chunks.
	r, err := recv()
	if err != nil || r == nil {
		return res, err
	}
	c := r.GetRequestHeaders().GetResponse()
	if buffered {
		c = r.GetRequestBody().GetResponse()
	}
	if c == nil {
		return nil, fmt.Errorf("expected the decision (buffered: %v), got %v", buffered, r)
	}
	decision(c, r)
	var upstreamBody []byte
	if buffered {
		upstreamBody = body
		if m := c.GetBodyMutation(); m != nil {
			upstreamBody = m.GetBody()
		}
		res.BodyChunks = 1
	} else {
		for {
			r, err := recv()
			if err != nil || r == nil {
				return res, err
			}
			s := r.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
			if s == nil {
				return nil, fmt.Errorf("expected a streamed request body chunk, got %v", r)
			}
			upstreamBody = append(upstreamBody, s.GetBody()...)
			res.BodyChunks++
			if s.GetEndOfStream() {
				break
			}
		}
	}
	res.Body = string(upstreamBody)

	if o.Forward {
		if err := respond(ctx, upstream, res, send, recv, path, upstreamBody, buffered, o.ResponsePhase, o.FirstByte); err != nil {
			return nil, err
		}
	}
	if o.Answered != nil {
		o.Answered()
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	// The picker ends the stream once Envoy has.
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return nil, fmt.Errorf("stream did not end cleanly: %w", err)
		}
	}
}

// respond sends the request to the destination the picker chose and, with responsePhase, runs the
// answer through the response phase, as Envoy would.
func respond(ctx context.Context, upstream *http.Client, res *Result, send func(*extprocv3.ProcessingRequest) error,
	recv func() (*extprocv3.ProcessingResponse, error), path string, body []byte,
	buffered, responsePhase bool, firstByte func()) error {
	destination := res.SetHeaders[DestinationHeader]
	if destination == "" {
		return errors.New("no " + DestinationHeader + " to forward to")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+destination+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	answer, err := upstream.Do(req)
	if err != nil {
		return err
	}
	answerBody, err := io.ReadAll(&firstByteReader{answer.Body, firstByte})
	answer.Body.Close()
	if err != nil {
		return err
	}
	res.UpstreamStatus = answer.StatusCode
	if !responsePhase {
		res.ResponseBody = string(answerBody)
		return nil
	}
	sendHeaders := func() error {
		return send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				header(":status", strconv.Itoa(answer.StatusCode)),
				header("content-type", answer.Header.Get("content-type")),
			}}},
		}})
	}
	sendBody := func() error {
		return send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: answerBody, EndOfStream: true},
		}})
	}
	recvHeaders := func() error {
		if r, err := recv(); err != nil || r == nil || r.GetResponseHeaders() == nil {
			return fmt.Errorf("expected a response_headers response, got %v (%v)", r, err)
		}
		return nil
	}
	// Envoy waits for the headers response before it sends a buffered body; in full duplex the
	// body follows the headers at once.
	if err := sendHeaders(); err != nil {
		return err
	}
	if buffered {
		if err := recvHeaders(); err != nil {
			return err
		}
	}
	if err := sendBody(); err != nil {
		return err
	}
	if !buffered {
		if err := recvHeaders(); err != nil {
			return err
		}
	}
	if buffered {
		r, err := recv()
		if err != nil || r == nil || r.GetResponseBody() == nil {
			return fmt.Errorf("expected a response_body response, got %v (%v)", r, err)
		}
		res.ResponseBody = string(answerBody)
		if m := r.GetResponseBody().GetResponse().GetBodyMutation(); m != nil && m.GetBody() != nil {
			res.ResponseBody = string(m.GetBody())
		}
		return nil
	}
	// Full duplex: Envoy passes on only what the processor hands back.
	var handed []byte
	for {
		r, err := recv()
		if err != nil || r == nil {
			return fmt.Errorf("response body: %v", err)
		}
		s := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if s == nil {
			return fmt.Errorf("expected a streamed response body chunk, got %v", r)
		}
		handed = append(handed, s.GetBody()...)
		if s.GetEndOfStream() {
			break
		}
	}
	res.ResponseBody = string(handed)
	return nil
}

// firstByteReader calls seen (once, then forgets it) when the first bytes are read.
type firstByteReader struct {
	r    io.Reader
	seen func()
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.seen != nil {
		f.seen()
		f.seen = nil
	}
	return n, err
}
