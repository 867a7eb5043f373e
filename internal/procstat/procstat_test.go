package procstat

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	line := "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10"
	s, ok := parse(line)
	if !ok || s.State != 'S' || s.PPID != 17 || s.Start != 123456 {
		t.Fatalf("parse = %+v %v", s, ok)
	}
	if _, ok := parse("4242 (truncated"); ok {
		t.Error("a line without ')' parsed")
	}
	if _, ok := parse("1 (x) S 0"); ok {
		t.Error("a short line parsed")
	}
	if s, _ := parse("9 (z) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"); !s.Zombie() {
		t.Error("Z not a zombie")
	}
}

func TestReadSelf(t *testing.T) {
	s, ok := Read(os.Getpid())
	if !ok || s.PPID != os.Getppid() || s.Start == 0 || s.Zombie() || !Alive(os.Getpid()) {
		t.Fatalf("Read(self) = %+v %v", s, ok)
	}
	if Alive(1 << 30) {
		t.Error("a pid that cannot exist is alive")
	}
}

func TestChildren(t *testing.T) {
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if got := Children(os.Getpid()); !slices.Contains(got, cmd.Process.Pid) {
		t.Fatalf("Children(self) = %v, want %d among them", got, cmd.Process.Pid)
	}
	if got := Children(cmd.Process.Pid); len(got) != 0 {
		t.Fatalf("Children(sleep) = %v, want none", got)
	}
}

func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 5 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for range 200 {
		got, kids := Descendants(os.Getpid()), Children(cmd.Process.Pid)
		if slices.Contains(got, cmd.Process.Pid) && len(kids) == 1 && slices.Contains(got, kids[0]) {
			return // the shell, and its sleep below it
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("Descendants(self) = %v, want the shell %d and its sleep", Descendants(os.Getpid()), cmd.Process.Pid)
}
