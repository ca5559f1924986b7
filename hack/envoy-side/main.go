// envoy-side plays Envoy's side of ext_proc against an Endpoint Picker, with the Go types that
// go-control-plane generates from Envoy's own API — an implementation of the protocol independent
// of the picker's (protobufjs over proto files it carries itself). It sends one HTTP request's
// headers and body in BUFFERED or FULL_DUPLEX_STREAMED mode, reads the picker's decision,
// optionally forwards the request to the chosen endpoint and passes the answer through the
// response phase, and prints what happened as one JSON object:
//
//	envoy-side -addr 127.0.0.1:9002 -mode full-duplex -body '{"model":"m","prompt":"hi"}' -forward
//
// The exchange itself is the package exchange, which bench/loadgen (the benchmark's load
// generator) plays Envoy with too.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"modelrollout.local/envoy-side/exchange"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "the picker's ext_proc address")
	mode := flag.String("mode", "full-duplex", "request body mode: full-duplex | buffered")
	path := flag.String("path", "/v1/completions", "request path")
	body := flag.String("body", "", "request body")
	forward := flag.Bool("forward", false, "send the request to the chosen endpoint and run the response phase")
	timeout := flag.Duration("timeout", 10*time.Second, "whole exchange")
	flag.Parse()
	res, err := exchangeOnce(*addr, *mode, *path, []byte(*body), *forward, *timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "envoy-side: %v\n", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func bodyModeOf(mode string) (filterv3.ProcessingMode_BodySendMode, error) {
	switch mode {
	case "full-duplex":
		return filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, nil
	case "buffered":
		return filterv3.ProcessingMode_BUFFERED, nil
	}
	return 0, fmt.Errorf("mode must be full-duplex or buffered, got %q", mode)
}

func exchangeOnce(addr, mode, path string, body []byte, forward bool, timeout time.Duration) (*exchange.Result, error) {
	bodyMode, err := bodyModeOf(mode)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return exchange.Run(ctx, extprocv3.NewExternalProcessorClient(conn), http.DefaultClient, exchange.Options{
		BodyMode: bodyMode, Path: path, Body: body, Forward: forward, ResponsePhase: forward,
	})
}
