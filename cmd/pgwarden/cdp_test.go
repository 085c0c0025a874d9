package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// devtools drives a headless Chromium through the DevTools protocol over
// --remote-debugging-pipe: JSON messages separated by NUL bytes, the
// browser reading fd 3 and writing fd 4. One page, attached flat.
type devtools struct {
	t       *testing.T
	cmd     *exec.Cmd
	w       *os.File
	r       *bufio.Reader
	next    int
	session string
}

// startDevtools starts chromium with a fresh profile under dir and opens
// a blank page of width x height CSS pixels in time zone tz.
func startDevtools(t *testing.T, ctx context.Context, chromium, dir string, width, height int, tz string) *devtools {
	t.Helper()
	toBrowser, browserIn, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	browserOut, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--remote-debugging-pipe", "--no-first-run", "--user-data-dir="+filepath.Join(dir, "chrome"), "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser}
	// A group of its own: the renderer and helper processes outlive the
	// browser's and write to the profile after it exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	d := &devtools{t: t, cmd: cmd, w: browserIn, r: bufio.NewReader(browserOut)}
	t.Cleanup(func() {
		d.send("Browser.close", nil, false)
		browserIn.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		browserOut.Close()
		// End the helpers too, and wait until none is left, so that the
		// profile can be removed with the test's directory.
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	var target struct{ TargetID string }
	d.callInto("Target.createTarget", map[string]any{"url": "about:blank"}, false, &target)
	var attached struct{ SessionID string }
	d.callInto("Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, false, &attached)
	d.session = attached.SessionID
	d.call("Page.enable", nil)
	d.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false})
	d.call("Emulation.setTimezoneOverride", map[string]any{"timezoneId": tz})
	return d
}

func (d *devtools) send(method string, params any, inPage bool) int {
	d.next++
	msg := map[string]any{"id": d.next, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if inPage {
		msg["sessionId"] = d.session
	}
	b, _ := json.Marshal(msg)
	d.w.Write(append(b, 0))
	return d.next
}

// callInto sends a command and decodes its result into out, skipping the
// events that come before it.
func (d *devtools) callInto(method string, params any, inPage bool, out any) {
	d.t.Helper()
	id := d.send(method, params, inPage)
	for {
		line, err := d.r.ReadBytes(0)
		if err != nil {
			d.t.Fatalf("devtools %s: %v", method, err)
		}
		var m struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line[:len(line)-1], &m); err != nil || m.ID != id {
			continue
		}
		if m.Error != nil {
			d.t.Fatalf("devtools %s: %s", method, m.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(m.Result, out); err != nil {
				d.t.Fatalf("devtools %s: %v", method, err)
			}
		}
		return
	}
}

func (d *devtools) call(method string, params any) {
	d.t.Helper()
	d.callInto(method, params, true, nil)
}

// eval runs expression in the page (awaiting a promise) and returns its
// value as JSON.
func (d *devtools) eval(expression string) json.RawMessage {
	d.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	d.callInto("Runtime.evaluate", map[string]any{"expression": expression, "awaitPromise": true, "returnByValue": true}, true, &res)
	if res.ExceptionDetails != nil {
		d.t.Fatalf("page script %q: %s %s", expression, res.ExceptionDetails.Text, res.ExceptionDetails.Exception.Description)
	}
	return res.Result.Value
}

// waitFor polls expression until it is true.
func (d *devtools) waitFor(what, expression string) {
	d.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if string(d.eval("(() => { try { return !!("+expression+"); } catch (e) { return false; } })()")) == "true" {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the dashboard never showed %s (%s); error line: %s", what, expression, d.eval(`document.getElementById("error").textContent`))
		}
	}
}

// text returns the text of the elements selector matches, one string each.
func (d *devtools) text(selector string) []string {
	d.t.Helper()
	var out []string
	raw := d.eval(fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.textContent)`, selector))
	json.Unmarshal(raw, &out)
	return out
}

// screenshot saves the element selector matches (the page when empty) as
// a PNG at path.
func (d *devtools) screenshot(selector, path string) {
	d.t.Helper()
	params := map[string]any{"format": "png", "captureBeyondViewport": true}
	if selector != "" {
		var r struct{ X, Y, Width, Height float64 }
		raw := d.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.scrollIntoView(); const r = e.getBoundingClientRect();
			return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()`, selector))
		if err := json.Unmarshal(raw, &r); err != nil || r.Width == 0 {
			d.t.Fatalf("screenshot of %s: no such element (%s)", selector, raw)
		}
		params["clip"] = map[string]any{"x": r.X, "y": r.Y, "width": r.Width, "height": r.Height, "scale": 1}
	}
	var res struct{ Data string }
	d.callInto("Page.captureScreenshot", params, true, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o600); err != nil {
		d.t.Fatal(err)
	}
	d.t.Logf("screenshot: %s", path)
}
