// Package resmgr will hold the distributed resource manager (storage pools
// and volumes, network ports) and its node-side backings, which register
// into the agent through agent.Service. No issue has scheduled it yet; the
// cluster config's "pools" section is validated and kept for it.
package resmgr
