package migrate

import (
	"time"

	"github.com/migrate-tool/migrate/dnscheck"
)

// Step names in the journal, in the order a migration takes them.
const (
	StepPlan      = "plan"
	StepCapture   = "capture"
	StepTransfer  = "transfer"
	StepStartNew  = "start-new"
	StepPreflight = "preflight"
	StepTakeover  = "takeover"   // the proxy holds the old address, old service stopped
	StepFinalSync = "final-sync" // delta capture + transfer while old is stopped
	StepRestart   = "restart-new"
	StepRelease   = "release" // held connections forwarded to the new host
	StepDNS       = "dns-switch"
	StepDrain     = "drain"
	StepRollback  = "rollback"
)

// ProxyState says where the forwarding proxy on the old host runs and how
// to watch it. It is the data of the takeover step.
type ProxyState struct {
	Host          string    `json:"host"`           // host spec of the old host
	PID           int       `json:"pid"`            // the proxy daemon on the old host
	ControlSocket string    `json:"control_socket"` // Unix socket of its control API on the old host
	AccessLog     string    `json:"access_log"`     // its access log on the old host
	LogFormat     string    `json:"log_format"`     // accesslog format name of AccessLog
	Listen        string    `json:"listen"`         // the old address it holds, ADDR:PORT (first port)
	Backend       string    `json:"backend"`        // where it forwards, ADDR:PORT (first port)
	TakenAt       time.Time `json:"taken_at"`
	// Ports are all the ports held, "LISTEN -> BACKEND (MODE)".
	Ports []string `json:"ports,omitempty"`
}

// DNSSwitch is the data of the dns-switch step: the changes made and
// until when caches may still hold the old answers.
type DNSSwitch struct {
	Names      []string           `json:"names"`
	NewAddr    string             `json:"new_addr"`
	Servers    []string           `json:"servers"`
	Changes    []*dnscheck.Change `json:"changes"`
	SwitchedAt time.Time          `json:"switched_at"`
	// CachesExpire is the latest CachesExpire of Changes: after it no
	// cache can still hold an old answer.
	CachesExpire time.Time `json:"caches_expire"`
}
