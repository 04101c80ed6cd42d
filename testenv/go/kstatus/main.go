// Command kstatus prints what the upstream kstatus library (sigs.k8s.io/cli-utils
// pkg/kstatus/status, which Flux and kpt build their health checks on) says about Kubernetes
// objects: one JSON object per input object, {"name", "status", "message"}.
//
// Input: a JSON object, or a JSON list ({"items": [...]}, as `kubectl get -o json` prints), on
// stdin. Used by the operator's e2e tests; not part of the product.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var doc map[string]interface{}
	// Kubernetes' own JSON decoding: whole numbers become int64, as unstructured expects.
	if err := utiljson.Unmarshal(raw, &doc); err != nil {
		fail(err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for _, item := range items {
			if m, ok := item.(map[string]interface{}); ok {
				objects = append(objects, m)
			}
		}
	}
	out := json.NewEncoder(os.Stdout)
	for _, o := range objects {
		u := &unstructured.Unstructured{Object: o}
		res, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		if err := out.Encode(result{Name: u.GetName(), Status: res.Status.String(), Message: res.Message}); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
