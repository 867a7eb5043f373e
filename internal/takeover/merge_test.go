package takeover

import (
	"net"
	"testing"
	"time"
)

func TestMergedListenerTakesNothingAhead(t *testing.T) {
	var lns, dups []net.Listener
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		f, _ := ln.(*net.TCPListener).File()
		dup, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		lns, dups = append(lns, ln), append(dups, dup)
	}
	m, err := MergeListeners(dups)
	if err != nil {
		t.Fatal(err)
	}
	// One connection to each socket: both are accepted through m.
	for _, ln := range lns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for i := 0; i < 2; i++ {
		c, err := m.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// A connection nobody asked for stays queued after m closes, for the
	// socket's other owner.
	waiting, err := net.Dial("tcp", lns[1].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	time.Sleep(100 * time.Millisecond) // let m's poll loop see it, if it would take it
	m.Close()
	if _, err := m.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	lns[1].(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	c, err := lns[1].Accept()
	if err != nil {
		t.Fatalf("the queued connection was taken by the closed merged listener: %v", err)
	}
	c.Close()
}

func TestMergedPacketConn(t *testing.T) {
	var pcs []net.PacketConn
	for i := 0; i < 2; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		pcs = append(pcs, pc)
	}
	m, err := MergePacketConns(pcs)
	if err != nil {
		t.Fatal(err)
	}
	client, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer client.Close()
	for i, pc := range pcs {
		client.WriteTo([]byte{byte('a' + i)}, pc.LocalAddr())
	}
	got := map[byte]bool{}
	buf := make([]byte, 16)
	m.SetReadDeadline(time.Now().Add(3 * time.Second))
	for i := 0; i < 2; i++ {
		n, addr, err := m.ReadFrom(buf)
		if err != nil || n != 1 || addr.String() != client.LocalAddr().String() {
			t.Fatalf("read %d from %v: %v", n, addr, err)
		}
		got[buf[0]] = true
	}
	if !got['a'] || !got['b'] {
		t.Fatalf("got %v", got)
	}
	// The answer leaves from the socket the client wrote to.
	client.WriteTo([]byte("q"), pcs[1].LocalAddr())
	if _, addr, err := m.ReadFrom(buf); err != nil {
		t.Fatal(err)
	} else if _, err := m.WriteTo([]byte("r"), addr); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, from, err := client.ReadFrom(buf); err != nil || from.String() != pcs[1].LocalAddr().String() {
		t.Fatalf("answer from %v (%v), want %v", from, err, pcs[1].LocalAddr())
	}
	m.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := m.ReadFrom(buf); err == nil {
		t.Fatal("read past the deadline")
	}
}
