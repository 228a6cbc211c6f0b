// ferryctl commands that talk to a hub's REST API (docs/api.md): contexts,
// tenants, agents, policies, snapshots and fleet status. Each returns the
// process exit code (ctl/exit_codes.h) and prints errors as
// "ferryctl: <what failed>: <why and what to do>".
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ctl/ctl_config.h"
#include "ctl/exit_codes.h"
#include "ctl/hub_client.h"
#include "ctl/output.h"

namespace ferry::ctl {

// Flags every hub command takes.
struct HubArgs {
  HubSelection selection;  // --hub, --token, --tenant
  std::string output = "table";
  std::string config_path;  // --ferry-config; empty = CtlConfig::DefaultPath()
};

// A resolved hub, a client for it, and the output format.
struct HubCall {
  ResolvedHub hub;
  std::unique_ptr<HubClient> client;
  OutputFormat format = OutputFormat::kTable;
  // The tenant, or kInvalidArgument saying how to give one.
  Result<std::string> Tenant() const;
  // "/v1/tenants/<tenant>" + rest.
  Result<std::string> TenantPath(const std::string& rest) const;
};
Result<HubCall> OpenHub(const HubArgs& args);

// config
struct ConfigAddHubArgs {
  std::string config_path;
  std::string name;
  std::string url;
  std::string token;
  std::string fingerprint;
  std::string tenant;
  bool no_check = false;  // save without asking the hub
};
int ConfigAddHub(const ConfigAddHubArgs& args);
int ConfigUse(const std::string& config_path, const std::string& name);
int ConfigList(const std::string& config_path, const std::string& output);

// tenant
int TenantCreate(const HubArgs& args, const std::string& name);
int TenantList(const HubArgs& args);

// agent
struct EnrollTokenArgs {
  std::string name;                                    // --name: the agent must enroll under it
  std::vector<std::string> labels;                     // --label k=v
  std::string ttl = "1h";                              // --ttl
  std::string agent_config = "/etc/ferry/agent.yaml";  // for the printed command
};
int AgentEnrollToken(const HubArgs& args, const EnrollTokenArgs& token);
int AgentList(const HubArgs& args);
int AgentShow(const HubArgs& args, const std::string& name);
int AgentRevoke(const HubArgs& args, const std::string& name);

// policy
int PolicyApply(const HubArgs& args, const std::vector<std::string>& files);
int PolicyList(const HubArgs& args);
int PolicyGet(const HubArgs& args, const std::string& name);
int PolicyDelete(const HubArgs& args, const std::string& name);

// snapshot (at a hub)
struct HubSnapshotFilter {
  std::string agent;
  std::string dataset;
  std::string since;
  std::string until;
  int limit = 100;
};
int HubSnapshotList(const HubArgs& args, const HubSnapshotFilter& filter);
int HubSnapshotShow(const HubArgs& args, const std::string& snapshot);
// "latest" (with the filter's agent/dataset), a full id, or a unique prefix
// of at least 6 hex digits among the newest 1000 snapshots.
Result<std::string> ResolveHubSnapshot(HubCall& call, const std::string& text,
                                       const HubSnapshotFilter& filter);

// token (API tokens)
int TokenCreate(const HubArgs& args, const std::string& role, const std::string& description);
int TokenList(const HubArgs& args, bool all_tenants);
int TokenRevoke(const HubArgs& args, const std::string& id);

// status
int FleetStatus(const HubArgs& args);

// Helpers shared with the restore path.
std::string ShortTime(const boost::json::value* rfc3339);
std::string HumanAge(int64_t seconds);

}  // namespace ferry::ctl
