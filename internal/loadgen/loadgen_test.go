package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadCountsAndBounds(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	l := Start(context.Background(), Options{URLs: []string{srv.URL + "/a", srv.URL + "/b"}, Rate: 1000, MaxRequests: 200, MaxDuration: 10 * time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, failed := l.Snapshot()
		if ok+failed >= 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := l.Stop()
	if r.OK+r.Failed != 200 {
		t.Fatalf("sent %d+%d, want exactly the budget of 200", r.OK, r.Failed)
	}
	if r.Failed != 20 || r.Statuses[500] != 20 || len(r.Errors) != 10 {
		t.Fatalf("failures %d (statuses %v, %d errors kept), want 20", r.Failed, r.Statuses, len(r.Errors))
	}
	if r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
		t.Fatalf("latencies p50 %v p99 %v max %v", r.P50, r.P99, r.Max)
	}
}

func TestDeadServerFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	r := Start(context.Background(), Options{URLs: []string{url}, Rate: 100, MaxRequests: 5, MaxDuration: 5 * time.Second, Timeout: time.Second})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, failed := r.Snapshot(); failed > 0 {
			break
		}
	}
	res := r.Stop()
	if res.Failed == 0 || res.OK != 0 {
		t.Fatalf("ok %d failed %d against a closed port", res.OK, res.Failed)
	}
}
