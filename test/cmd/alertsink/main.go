// Command alertsink is a webhook receiver for demos and manual tests: it
// verifies each request's pgwarden signature and prints the alert as one
// line on stdout.
//
//	PGWARDEN_WEBHOOK_SECRET=s alertsink --listen 127.0.0.1:8099
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/pgwarden/pgwarden/audit/notify"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("alertsink: ")
	listen := flag.String("listen", "127.0.0.1:8099", "`address` to listen on")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: alertsink [--listen ADDR]   (secret: $PGWARDEN_WEBHOOK_SECRET)")
		flag.PrintDefaults()
	}
	flag.Parse()
	secret := []byte(os.Getenv("PGWARDEN_WEBHOOK_SECRET"))
	if len(secret) == 0 {
		log.Fatal("PGWARDEN_WEBHOOK_SECRET is not set")
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := notify.VerifySignature(secret, []byte(r.Header.Get(notify.HeaderTimestamp)), body,
			r.Header.Get(notify.HeaderSignature), time.Now(), 5*time.Minute); err != nil {
			log.Printf("rejected a request: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var a notify.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		fmt.Printf("ALERT [%s] %s: %s\n", a.Severity, a.Action, a.Reason)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
