package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// HandlerTimeout bounds the work of one internal call on the serving node.
const HandlerTimeout = 30 * time.Second

// Handler adapts a JSON endpoint: h gets the request body (at most
// MaxBody bytes) and returns the value to answer with, or an error that is
// answered as an ErrorBody with the status of its kind (StatusCode).
func Handler(h func(ctx context.Context, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
		if err != nil {
			WriteError(w, fmt.Errorf("rpc: read request: %w", err))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), HandlerTimeout)
		defer cancel()
		out, err := h(ctx, body)
		if err != nil {
			WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out) //nolint:errcheck // the caller sees a short body
	}
}

// WriteError answers err as an ErrorBody with the status of its kind. A
// *RemoteError (a call this node forwarded, to the controller say) is
// passed on with its kind and message unchanged.
func WriteError(w http.ResponseWriter, err error) {
	body := ErrorBody{Kind: Kind(err), Error: err.Error()}
	if re, ok := err.(*RemoteError); ok {
		body = ErrorBody{Kind: re.Kind, Error: re.Message}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(StatusCode(body.Kind))
	json.NewEncoder(w).Encode(body) //nolint:errcheck // the caller sees a short body
}
