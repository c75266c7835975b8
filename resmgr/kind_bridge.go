package resmgr

import (
	"errors"

	"github.com/tidwall/gjson"
)

// linux_bridge: an existing bridge on each node ("switch": {<node>:
// {"ifname": <bridge>}}), holding tap ports.
func init() {
	registerPoolKind(PoolLinuxBridge, poolKind{
		holds: TypePort,
		fromParams: func(c *PoolConfig, p gjson.Result) error {
			sw, ex := map[string]any{}, map[string]any{}
			if v := p.Get("switch"); v.IsObject() {
				sw = v.Value().(map[string]any)
			}
			if v := p.Get("export"); v.IsObject() {
				ex = v.Value().(map[string]any)
			}
			if len(sw) == 0 {
				return errors.New("linux_bridge pool needs \"switch\": {<node>: {\"ifname\": <bridge>}}")
			}
			c.Spec.Switch, c.Spec.Export = sw, ex
			return nil
		},
		nodeConfig: func(c PoolConfig, pick func(map[string]any) any) map[string]any {
			ex, _ := c.Spec.Export.(map[string]any)
			return map[string]any{"meta": map[string]any{"uuid": c.Meta.UUID, "type": c.Meta.Type, "name": c.Meta.Name},
				"spec": map[string]any{"switch": pick(c.Spec.Switch), "export": pick(ex)}}
		},
	})
}
