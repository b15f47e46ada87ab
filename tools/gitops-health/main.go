// gitops-health prints, for each RtcRecording it reads, what the two GitOps tools would show:
// the phase, the kstatus status (Flux's health checks: sigs.k8s.io/cli-utils/pkg/kstatus/status,
// the library itself) and the Argo CD health (the chart's Lua health script, run the way Argo CD
// runs a resource.customizations.health script: gopher-lua, global `obj`, a {status, message}
// table back).
//
//	gitops-health -script charts/rtc-recording-operator/argocd/health.lua -kubeconfig K -namespace NS
//	kubectl get rtcrec -o json | gitops-health -script .../health.lua
//
// Objects come from the apiserver (-kubeconfig, -namespace; -namespace "" lists all namespaces) or
// from standard input: one object, a List (kubectl get -o json), or several objects one after the
// other. -o json prints one JSON object per line; the default is a table.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	lua "github.com/yuin/gopher-lua"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

var rtcRecordings = schema.GroupVersionResource{Group: "rtc.recording.io", Version: "v1alpha1", Resource: "rtcrecordings"}

// Row is what is printed for one object.
type Row struct {
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	Phase           string `json:"phase"`
	KStatus         string `json:"kstatus"`
	KStatusMessage  string `json:"kstatusMessage"`
	ArgoHealth      string `json:"argoHealth"`
	ArgoMessage     string `json:"argoMessage"`
	ArgoScriptError string `json:"argoScriptError,omitempty"`
}

func main() {
	script := flag.String("script", "", "the Argo CD health Lua script (required)")
	kubeconfig := flag.String("kubeconfig", "", "read RtcRecordings from this cluster instead of standard input")
	namespace := flag.String("namespace", "", "with -kubeconfig: the namespace to list (empty: all namespaces)")
	output := flag.String("o", "table", "table or json (one object per line)")
	flag.Parse()
	if *script == "" || (*output != "table" && *output != "json") {
		flag.Usage()
		os.Exit(2)
	}
	source, err := os.ReadFile(*script)
	if err != nil {
		fail(err)
	}
	var objects []*unstructured.Unstructured
	if *kubeconfig != "" {
		objects, err = list(*kubeconfig, *namespace)
	} else {
		objects, err = decode(os.Stdin)
	}
	if err != nil {
		fail(err)
	}
	sort.Slice(objects, func(i, j int) bool {
		a, b := objects[i], objects[j]
		return a.GetNamespace()+"/"+a.GetName() < b.GetNamespace()+"/"+b.GetName()
	})
	rows, scriptErrors := make([]Row, 0, len(objects)), 0
	for _, obj := range objects {
		row, err := evaluate(obj, string(source))
		if err != nil {
			fail(fmt.Errorf("%s/%s: %w", obj.GetNamespace(), obj.GetName(), err))
		}
		if row.ArgoScriptError != "" {
			scriptErrors++
		}
		rows = append(rows, row)
	}
	write(rows, *output)
	if scriptErrors > 0 {
		fmt.Fprintf(os.Stderr, "gitops-health: the health script failed on %d object(s)\n", scriptErrors)
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gitops-health:", err)
	os.Exit(2)
}

func evaluate(obj *unstructured.Unstructured, script string) (Row, error) {
	phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
	row := Row{Namespace: obj.GetNamespace(), Name: obj.GetName(), Phase: phase}
	result, err := status.Compute(obj)
	if err != nil {
		return row, fmt.Errorf("kstatus: %w", err)
	}
	row.KStatus, row.KStatusMessage = result.Status.String(), result.Message
	health, err := argoHealth(obj, script)
	if err != nil {
		// Argo CD shows Unknown with the error as the message (gitops-engine's GetResourceHealth).
		row.ArgoHealth, row.ArgoMessage, row.ArgoScriptError = "Unknown", err.Error(), err.Error()
	} else {
		row.ArgoHealth, row.ArgoMessage = health.Status, health.Message
	}
	return row, nil
}

// HealthStatus is Argo CD's (gitops-engine's) health.HealthStatus.
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

var validHealth = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

// argoHealth follows gitops-engine's health.GetResourceHealth with the Lua override of Argo CD's
// util/lua: an object being deleted is Progressing "Pending deletion" before any script runs; the
// script runs with only the package, base and table libraries open (Argo CD opens the standard
// library only for its built-in scripts, or with resource.customizations.useOpenLibs; it also adds
// a reduced os library, which this script does not use), a one-second deadline, and the object as
// the global `obj` (numbers as Lua numbers). The value left on the stack must be a table; its status
// must be one of Argo CD's codes, else the health is Unknown "Lua returned an invalid health status".
func argoHealth(obj *unstructured.Unstructured, script string) (HealthStatus, error) {
	if obj.GetDeletionTimestamp() != nil {
		return HealthStatus{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return HealthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return HealthStatus{}, err
	}
	returned := l.Get(-1)
	table, ok := returned.(*lua.LTable)
	if !ok {
		return HealthStatus{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := json.Marshal(fromLua(table))
	if err != nil {
		return HealthStatus{}, err
	}
	var health HealthStatus
	if err := json.Unmarshal(encoded, &health); err != nil {
		return HealthStatus{}, err
	}
	if !validHealth[health.Status] {
		return HealthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return health, nil
}

// toLua converts a decoded object as Argo CD's decodeValue does.
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case []interface{}:
		array := l.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(l, item))
		}
		return array
	case map[string]interface{}:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// fromLua turns the returned table into JSON values as the JSON encoder Argo CD uses does: a table
// with only keys 1..n is an array, any other table an object with string keys.
func fromLua(value lua.LValue) interface{} {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if n := v.MaxN(); n > 0 {
			array := make([]interface{}, 0, n)
			for i := 1; i <= n; i++ {
				array = append(array, fromLua(v.RawGetInt(i)))
			}
			return array
		}
		object := map[string]interface{}{}
		v.ForEach(func(key, item lua.LValue) { object[key.String()] = fromLua(item) })
		return object
	}
	return nil
}

func list(kubeconfig, namespace string) ([]*unstructured.Unstructured, error) {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	listed, err := client.Resource(rtcRecordings).Namespace(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	objects := make([]*unstructured.Unstructured, 0, len(listed.Items))
	for i := range listed.Items {
		// A list's items carry no apiVersion and kind of their own; kstatus names the kind in messages.
		listed.Items[i].SetGroupVersionKind(rtcRecordings.GroupVersion().WithKind("RtcRecording"))
		objects = append(objects, &listed.Items[i])
	}
	return objects, nil
}

func decode(in io.Reader) ([]*unstructured.Unstructured, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var objects []*unstructured.Unstructured
	decoder := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); errors.Is(err, io.EOF) {
			return objects, nil
		} else if err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		// The apiserver's own decoding: integers become int64, as in a live object.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		if obj.IsList() {
			items, err := obj.ToList()
			if err != nil {
				return nil, err
			}
			for i := range items.Items {
				objects = append(objects, &items.Items[i])
			}
		} else {
			objects = append(objects, obj)
		}
	}
}

func write(rows []Row, output string) {
	if output == "json" {
		encoder := json.NewEncoder(os.Stdout)
		for _, row := range rows {
			_ = encoder.Encode(row)
		}
		return
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tPHASE\tKSTATUS\tARGO CD HEALTH\tARGO CD MESSAGE")
	for _, row := range rows {
		phase := row.Phase
		if phase == "" {
			phase = "<none>"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", row.Namespace, row.Name, phase, row.KStatus, row.ArgoHealth,
			strings.ReplaceAll(row.ArgoMessage, "\n", " "))
	}
	_ = w.Flush()
}
