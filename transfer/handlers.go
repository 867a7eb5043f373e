package transfer

import (
	"context"

	"github.com/migrate-tool/migrate/internal/agent"
)

// Agent methods served on the target.
const (
	MethodPrepare = "transfer.prepare"
	MethodReceive = "transfer.receive"
	MethodCommit  = "transfer.commit"
)

func init() {
	agent.Register(MethodPrepare, func(ctx context.Context, c *agent.Call) (any, error) {
		var p prepareParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return prepare(ctx, p, c.Log)
	})
	agent.Register(MethodReceive, func(ctx context.Context, c *agent.Call) (any, error) {
		var p receiveParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return receive(ctx, p, c.In, c.Log)
	})
	agent.Register(MethodCommit, func(ctx context.Context, c *agent.Call) (any, error) {
		var p commitParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return commit(ctx, p, c.Log)
	})
	for method, fn := range map[string]func(context.Context, ServiceOptions) (*ServiceStatus, error){
		MethodStart: startService, MethodStop: stopService, MethodStatus: serviceStatus, MethodRemove: removeService,
	} {
		agent.Register(method, func(ctx context.Context, c *agent.Call) (any, error) {
			var o ServiceOptions
			if err := c.Decode(&o); err != nil {
				return nil, err
			}
			return fn(ctx, o)
		})
	}
}
