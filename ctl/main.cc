// ferryctl: the operator CLI. Command wiring only; the commands live in
// local_commands.cc (keys, local stores), hub_commands.cc (a hub's REST API)
// and restore_commands.cc (restore and verify from either).
#include <CLI/CLI.hpp>
#include <iostream>

#include "core/log.h"
#include "core/malloc_arenas.h"
#include "core/version.h"
#include "ctl/hub_commands.h"
#include "ctl/local_commands.h"
#include "ctl/restore_commands.h"
#include "ctl/stream_commands.h"

namespace {

// Adds --hub, --token, --tenant, --output and --ferry-config to a command
// that talks to a hub.
void AddHubFlags(CLI::App* cmd, ferry::ctl::HubArgs& args, bool tenant = true) {
  cmd->add_option("--hub", args.selection.hub,
                  "Hub: a name from ferryctl config, or a URL (default: FERRY_HUB, then the "
                  "current hub)");
  cmd->add_option("--token", args.selection.token,
                  "API token (default: FERRY_TOKEN, then the hub's saved token)");
  if (tenant) {
    cmd->add_option("--tenant", args.selection.tenant,
                    "Tenant (default: FERRY_TENANT, then the hub's saved tenant)");
  }
  cmd->add_option("-o,--output", args.output, "table (default), json or yaml");
  cmd->add_option("--ferry-config", args.config_path,
                  "ferryctl's hub list (default: FERRY_CONFIG, then "
                  "~/.config/ferry/config.yaml)");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ferry::ctl;
  ferry::UseOneMallocArena();  // before any thread: restore and capture stay within 32 MiB
  ferry::log::Init({.level = ferry::log::Level::kWarn, .program = "ferryctl"});

  CLI::App app{
      "ferryctl: manage Ferry hubs, tenants, agents, mirror policies, snapshots, restores "
      "and keys."};
  app.footer(kExitCodesHelp);
  app.set_version_flag("--version", std::string("ferryctl ") + ferry::kFerryVersion);
  app.require_subcommand(1);
  int exit_code = kExitOk;

  // keys
  CLI::App* keys = app.add_subcommand("keys", "Tenant keysets and agent key files");
  keys->require_subcommand(1);
  KeysInitArgs init;
  CLI::App* keys_init = keys->add_subcommand(
      "init",
      "Create a tenant keyset: chunk-id key, tenant key pair (private half sealed with a "
      "passphrase) and a signing key.\nExample: FERRY_PASSPHRASE=... ferryctl keys init --out "
      "tenant.keyset");
  keys_init->add_option("--out", init.out, "Keyset file to create (mode 0600)")->required();
  keys_init->add_option(
      "--passphrase-file", init.passphrase_file,
      "Read the passphrase from this file (else FERRY_PASSPHRASE, else a prompt)");
  keys_init
      ->add_option("--argon2-memory", init.argon2_memory_mib,
                   "Argon2id memory in MiB for sealing the private key")
      ->capture_default_str()
      ->check(CLI::Range(8, 4096));
  keys_init->add_option("--argon2-ops", init.argon2_ops, "Argon2id passes")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  keys_init->callback([&] { exit_code = KeysInit(init); });

  ExportAgentArgs exp;
  CLI::App* keys_export = keys->add_subcommand(
      "export-agent",
      "Write the write-only agent key file (chunk-id key, tenant public key, a new signing "
      "key): devices holding it can add snapshots but decrypt nothing.\nExample: ferryctl keys "
      "export-agent --keyset tenant.keyset --out agent.key");
  keys_export->add_option("--keyset", exp.keyset, "Tenant keyset file")->required();
  keys_export->add_option("--out", exp.out, "Agent key file to create (mode 0600)")->required();
  keys_export->callback([&] { exit_code = KeysExportAgent(exp); });

  // config
  CLI::App* config = app.add_subcommand(
      "config", "The hubs ferryctl knows (like kubectl contexts), in ~/.config/ferry/config.yaml");
  config->require_subcommand(1);
  ConfigAddHubArgs add_hub;
  CLI::App* config_add = config->add_subcommand(
      "add-hub",
      "Save a hub (URL, API token, pinned fingerprint, default tenant) under a name; the first "
      "one becomes the current hub. Saving a name again changes what is given and keeps the "
      "rest. The token is checked against the hub unless --no-check.\n"
      "Example: ferryctl config add-hub prod --url http://hub.example:7070 --token fry_... "
      "--fingerprint fry1:... --tenant acme");
  config_add->add_option("NAME", add_hub.name, "A name for the hub")->required();
  config_add->add_option("--url", add_hub.url, "The hub's URL (http://host:port)")->required();
  config_add->add_option("--token", add_hub.token, "API token");
  config_add->add_option("--fingerprint", add_hub.fingerprint,
                         "The hub's link key fingerprint (fry1:...), as ferry-hub init printed "
                         "it: agent enroll-token refuses a hub that presents another");
  config_add->add_option("--tenant", add_hub.tenant, "Default tenant");
  config_add->add_flag("--no-check", add_hub.no_check, "Save without contacting the hub");
  config_add->add_option("--ferry-config", add_hub.config_path, "ferryctl's hub list file");
  config_add->callback([&] { exit_code = ConfigAddHub(add_hub); });

  std::string use_name, config_file, config_output = "table";
  CLI::App* config_use = config->add_subcommand(
      "use", "Make a saved hub the current one.\nExample: ferryctl config use prod");
  config_use->add_option("NAME", use_name, "A saved hub's name")->required();
  config_use->add_option("--ferry-config", config_file, "ferryctl's hub list file");
  config_use->callback([&] { exit_code = ConfigUse(config_file, use_name); });
  CLI::App* config_list = config->add_subcommand(
      "list", "List the saved hubs (tokens are not printed).\nExample: ferryctl config list");
  config_list->add_option("--ferry-config", config_file, "ferryctl's hub list file");
  config_list->add_option("-o,--output", config_output, "table (default), json or yaml");
  config_list->callback([&] { exit_code = ConfigList(config_file, config_output); });

  // tenant
  HubArgs hub_args;
  CLI::App* tenant = app.add_subcommand("tenant", "Tenants of a hub");
  tenant->require_subcommand(1);
  std::string tenant_name;
  CLI::App* tenant_create = tenant->add_subcommand(
      "create",
      "Create a tenant (needs an admin token of every tenant).\nExample: ferryctl tenant create "
      "acme");
  tenant_create->add_option("NAME", tenant_name, "Tenant name (a-z, 0-9, -)")->required();
  AddHubFlags(tenant_create, hub_args, /*tenant=*/false);
  tenant_create->callback([&] { exit_code = TenantCreate(hub_args, tenant_name); });
  CLI::App* tenant_list =
      tenant->add_subcommand("list", "List tenants.\nExample: ferryctl tenant list -o json");
  AddHubFlags(tenant_list, hub_args, /*tenant=*/false);
  tenant_list->callback([&] { exit_code = TenantList(hub_args); });

  // agent
  CLI::App* agent = app.add_subcommand("agent", "Agents enrolled with a hub");
  agent->require_subcommand(1);
  EnrollTokenArgs enroll;
  CLI::App* agent_token = agent->add_subcommand(
      "enroll-token",
      "Make a one-time join token and print the exact `ferry-agent enroll` line to run on the "
      "device.\nExample: ferryctl agent enroll-token --tenant acme --name cam-1 --label site=shop");
  agent_token->add_option("--name", enroll.name, "The name the agent must enroll under");
  agent_token->add_option("--label", enroll.labels, "Label key=value the agent gets (repeatable)");
  agent_token->add_option("--ttl", enroll.ttl, "How long the token is valid (1s to 30d)")
      ->capture_default_str();
  agent_token
      ->add_option("--agent-config", enroll.agent_config,
                   "The agent's config path, for the printed command")
      ->capture_default_str();
  AddHubFlags(agent_token, hub_args);
  agent_token->callback([&] { exit_code = AgentEnrollToken(hub_args, enroll); });
  std::string agent_name;
  CLI::App* agent_list = agent->add_subcommand(
      "list", "List a tenant's agents.\nExample: ferryctl agent list --tenant acme");
  AddHubFlags(agent_list, hub_args);
  agent_list->callback([&] { exit_code = AgentList(hub_args); });
  CLI::App* agent_show =
      agent->add_subcommand("show", "Show one agent.\nExample: ferryctl agent show cam-1 -o yaml");
  agent_show->add_option("NAME", agent_name, "Agent name")->required();
  AddHubFlags(agent_show, hub_args);
  agent_show->callback([&] { exit_code = AgentShow(hub_args, agent_name); });
  CLI::App* agent_revoke = agent->add_subcommand(
      "revoke",
      "Revoke an agent: its key is refused at once, also on an open session.\nExample: ferryctl "
      "agent revoke cam-1");
  agent_revoke->add_option("NAME", agent_name, "Agent name")->required();
  AddHubFlags(agent_revoke, hub_args);
  agent_revoke->callback([&] { exit_code = AgentRevoke(hub_args, agent_name); });

  // policy
  CLI::App* policy = app.add_subcommand("policy", "Mirror policies (docs/policies.md)");
  policy->require_subcommand(1);
  std::vector<std::string> policy_files;
  std::string policy_name;
  CLI::App* policy_apply = policy->add_subcommand(
      "apply",
      "Create or update policies from YAML or JSON files (a folder: every .yaml/.yml/.json in "
      "it; '---' separates documents). Everything is validated before anything is applied.\n"
      "Example: ferryctl policy apply -f policies/");
  policy_apply->add_option("-f,--filename", policy_files, "File or folder (repeatable)")
      ->required();
  AddHubFlags(policy_apply, hub_args);
  policy_apply->callback([&] { exit_code = PolicyApply(hub_args, policy_files); });
  CLI::App* policy_list =
      policy->add_subcommand("list", "List a tenant's policies.\nExample: ferryctl policy list");
  AddHubFlags(policy_list, hub_args);
  policy_list->callback([&] { exit_code = PolicyList(hub_args); });
  CLI::App* policy_get = policy->add_subcommand(
      "get",
      "Show one policy (-o yaml prints the document, ready to edit and apply).\nExample: "
      "ferryctl policy get shop-cameras -o yaml");
  policy_get->add_option("NAME", policy_name, "Policy name")->required();
  AddHubFlags(policy_get, hub_args);
  policy_get->callback([&] { exit_code = PolicyGet(hub_args, policy_name); });
  CLI::App* policy_delete = policy->add_subcommand(
      "delete",
      "Delete a policy (agents stop running it).\nExample: ferryctl policy delete "
      "shop-cameras");
  policy_delete->add_option("NAME", policy_name, "Policy name")->required();
  AddHubFlags(policy_delete, hub_args);
  policy_delete->callback([&] { exit_code = PolicyDelete(hub_args, policy_name); });

  // snapshot
  CLI::App* snap = app.add_subcommand("snapshot", "Create, list and show snapshots");
  snap->require_subcommand(1);
  SnapshotCreateArgs create;
  CLI::App* snap_create = snap->add_subcommand(
      "create",
      "Capture a directory into a local store (created if absent). Prints the snapshot id as "
      "the last line of stdout and a summary on stderr.\nExample: ferryctl snapshot create "
      "--store /var/lib/ferry/store --keyset agent.key --label site=shop /srv/data");
  snap_create->add_option("--store", create.store, "Store directory")->required();
  snap_create->add_option("--keyset", create.keyset, "Tenant keyset or agent key file")->required();
  snap_create->add_option("--label", create.labels, "Label key=value (repeatable)");
  snap_create->add_option("--name", create.dataset_name,
                          "Dataset name (default: the directory's name)");
  snap_create->add_flag("--json", create.json, "Print the summary as JSON on stdout");
  snap_create->add_flag("--no-cache", create.no_cache,
                        "Read every file even if the file cache says it is unchanged");
  snap_create->add_flag("--delta", create.delta,
                        "Store a changed file's new chunks as deltas of its previous chunks "
                        "where that halves them (docs/format/delta.md)");
  snap_create->add_option("--workers", create.workers, "CPU workers (default: all CPUs)");
  snap_create->add_option("PATH", create.path, "Directory to capture")->required();
  snap_create->callback([&] { exit_code = SnapshotCreate(create); });

  SnapshotListArgs list;
  HubSnapshotFilter filter;
  CLI::App* snap_list = snap->add_subcommand(
      "list",
      "List snapshots: at a hub (newest first; filters --agent, --dataset, --since, --until), "
      "or in a local store with --store (oldest first).\nExample: ferryctl snapshot list "
      "--agent cam-1 --since 2026-12-01\nExample: ferryctl snapshot list --store "
      "/var/lib/ferry/store --json");
  snap_list->add_option("--store", list.store, "A local store directory instead of a hub");
  snap_list->add_flag("--json", list.json, "JSON output (same as -o json)");
  snap_list->add_option("--agent", filter.agent, "Only this agent's snapshots");
  snap_list->add_option("--dataset", filter.dataset, "Only snapshots holding this dataset");
  snap_list->add_option("--since", filter.since,
                        "Captured at or after (Unix seconds, RFC 3339 or a date)");
  snap_list->add_option("--until", filter.until, "Captured before");
  snap_list->add_option("--limit", filter.limit, "At most this many (1-1000)")
      ->capture_default_str();
  AddHubFlags(snap_list, hub_args);
  snap_list->callback([&] {
    if (list.json) hub_args.output = "json";
    if (!list.store.empty()) {
      list.json = list.json || hub_args.output == "json";
      exit_code = SnapshotList(list);
    } else {
      exit_code = HubSnapshotList(hub_args, filter);
    }
  });

  SnapshotShowArgs show;
  CLI::App* snap_show = snap->add_subcommand(
      "show",
      "Show one snapshot: at a hub, or in a local store with --store.\nExample: ferryctl "
      "snapshot show 3f2a9c\nExample: ferryctl snapshot show --store /var/lib/ferry/store latest");
  snap_show->add_option("--store", show.store, "A local store directory instead of a hub");
  snap_show->add_flag("--json", show.json, "JSON output (same as -o json)");
  snap_show->add_option("SNAPSHOT", show.snapshot, "Snapshot id, unique prefix, or 'latest'")
      ->required();
  AddHubFlags(snap_show, hub_args);
  snap_show->callback([&] {
    if (show.json) hub_args.output = "json";
    if (!show.store.empty()) {
      show.json = show.json || hub_args.output == "json";
      exit_code = SnapshotShow(show);
    } else {
      exit_code = HubSnapshotShow(hub_args, show.snapshot);
    }
  });

  // restore
  RestoreArgs restore;
  CLI::App* rest = app.add_subcommand(
      "restore",
      "Restore a snapshot into a directory (absent or empty), from a hub (chunks come over HTTP "
      "and are decrypted here: the hub never sees keys) or from a local store with --store. "
      "With --path, the named file or folder is restored into DIR under its own name.\n"
      "Example: FERRY_PASSPHRASE=... ferryctl restore --hub prod --keyset tenant.keyset latest "
      "--agent cam-1 --to /tmp/restored\nExample: ferryctl restore --store /var/lib/ferry/store "
      "--keyset tenant.keyset 3f2a9c --path docs --to /tmp/docs");
  rest->add_option("--store", restore.store, "A local store directory instead of a hub");
  rest->add_option("--keyset", restore.keyset, "Tenant keyset file")->required();
  rest->add_option("--to", restore.to, "Target directory")->required();
  rest->add_option("--path", restore.path, "Restore only this file or folder of the snapshot");
  rest->add_option("--passphrase-file", restore.passphrase_file, "Read the passphrase from a file");
  rest->add_flag("--force", restore.force, "Restore into a non-empty directory, replacing files");
  rest->add_flag("--allow-external-symlinks", restore.allow_external_symlinks,
                 "Restore symlinks that point outside the target (absolute or ../ escapes)");
  rest->add_flag("--json", restore.json, "JSON summary on stdout (same as -o json)");
  rest->add_option("--workers", restore.workers, "Parallel fetches and CPU workers");
  rest->add_option("--agent", restore.filter.agent, "With 'latest': that agent's latest");
  rest->add_option("--dataset", restore.filter.dataset, "With 'latest': holding this dataset");
  rest->add_option("SNAPSHOT", restore.snapshot, "Snapshot id, unique prefix, or 'latest'")
      ->required();
  AddHubFlags(rest, restore.hub);
  rest->callback([&] { exit_code = Restore(restore); });

  // verify
  VerifyArgs verify;
  CLI::App* ver = app.add_subcommand(
      "verify",
      "Read, decrypt and check every chunk of a snapshot, at a hub or in a local store.\n"
      "Example: FERRY_PASSPHRASE=... ferryctl verify --hub prod --keyset tenant.keyset latest\n"
      "Example: ferryctl verify --store /var/lib/ferry/store --keyset tenant.keyset latest");
  ver->add_option("--store", verify.store, "A local store directory instead of a hub");
  ver->add_option("--keyset", verify.keyset, "Tenant keyset file")->required();
  ver->add_option("--passphrase-file", verify.passphrase_file, "Read the passphrase from a file");
  ver->add_flag("--json", verify.json, "JSON summary on stdout (same as -o json)");
  ver->add_option("--workers", verify.workers, "Parallel fetches and CPU workers");
  ver->add_option("--agent", verify.filter.agent, "With 'latest': that agent's latest");
  ver->add_option("--dataset", verify.filter.dataset, "With 'latest': holding this dataset");
  ver->add_option("SNAPSHOT", verify.snapshot, "Snapshot id, unique prefix, or 'latest'")
      ->required();
  AddHubFlags(ver, verify.hub);
  ver->callback([&] { exit_code = Verify(verify); });

  // stream
  CLI::App* stream = app.add_subcommand("stream", "Agents' streams as a hub holds them");
  stream->require_subcommand(1);
  StreamReadArgs stream_read;
  CLI::App* stream_read_cmd = stream->add_subcommand(
      "read",
      "Print a stream's records from a hub, in offset order: raw, one per line, or as JSON "
      "lines with -o json ({\"offset\": N, \"data\": \"...\"}, or \"base64\" for bytes "
      "that are not UTF-8). Batches are checked against the agent's signing key and decrypted "
      "here: the hub never sees keys.\n"
      "Example: FERRY_PASSPHRASE=... ferryctl stream read cam-1/events --keyset tenant.keyset "
      "--from 1000 --follow -o json");
  stream_read_cmd->add_option("TARGET", stream_read.target, "AGENT/STREAM")->required();
  stream_read_cmd->add_option("--keyset", stream_read.keyset, "Tenant keyset file")->required();
  stream_read_cmd->add_option("--passphrase-file", stream_read.passphrase_file,
                              "Read the passphrase from a file");
  stream_read_cmd->add_option("--from", stream_read.from, "First offset to print (default 0)");
  stream_read_cmd->add_option("--end", stream_read.end, "Stop before this offset");
  stream_read_cmd->add_option("--max", stream_read.max, "Stop after this many records");
  stream_read_cmd->add_flag("--follow,-f", stream_read.follow,
                            "At the end, wait for new records (until interrupted)");
  stream_read_cmd
      ->add_option("--poll-ms", stream_read.poll_ms,
                   "With --follow: how often to ask the hub at the end (ms)")
      ->check(CLI::Range(50, 60000));
  AddHubFlags(stream_read_cmd, stream_read.hub);
  stream_read_cmd->callback([&] { exit_code = StreamRead(stream_read); });
  std::string stream_agent;
  CLI::App* stream_list = stream->add_subcommand(
      "list",
      "The streams a hub holds, per agent: first and next offset, stored bytes.\n"
      "Example: ferryctl stream list --agent cam-1");
  stream_list->add_option("--agent", stream_agent, "Only this agent's streams");
  AddHubFlags(stream_list, hub_args);
  stream_list->callback([&] { exit_code = StreamList(hub_args, stream_agent); });

  // token
  CLI::App* token =
      app.add_subcommand("token", "API tokens of a hub (roles reader, operator, admin)");
  token->require_subcommand(1);
  std::string token_role, token_description, token_id;
  bool token_all = false;
  CLI::App* token_create = token->add_subcommand(
      "create",
      "Make an API token of a tenant (needs an admin token); printed once.\nExample: ferryctl "
      "token create --tenant acme --role operator --description 'ci pipeline'");
  token_create->add_option("--role", token_role, "reader, operator or admin")
      ->required()
      ->check(CLI::IsMember({"reader", "operator", "admin"}));
  token_create->add_option("--description", token_description, "What it is for");
  AddHubFlags(token_create, hub_args);
  token_create->callback([&] { exit_code = TokenCreate(hub_args, token_role, token_description); });
  CLI::App* token_list = token->add_subcommand(
      "list",
      "List a tenant's API tokens (or every tenant's with --all-tenants).\nExample: "
      "ferryctl token list --tenant acme");
  token_list->add_flag("--all-tenants", token_all, "Every tenant's (needs an all-tenants admin)");
  AddHubFlags(token_list, hub_args);
  token_list->callback([&] { exit_code = TokenList(hub_args, token_all); });
  CLI::App* token_revoke = token->add_subcommand(
      "revoke", "Revoke an API token at once.\nExample: ferryctl token revoke tok-3f9a1c2b");
  token_revoke->add_option("ID", token_id, "Token id (tok-...)")->required();
  AddHubFlags(token_revoke, hub_args, /*tenant=*/false);
  token_revoke->callback([&] { exit_code = TokenRevoke(hub_args, token_id); });

  // status
  CLI::App* status = app.add_subcommand(
      "status",
      "Per policy and agent: the last snapshot at the hub, its age against the policy's RPO "
      "(MISSED when older), what the agent still has to send, its last error.\nExample: "
      "ferryctl status --tenant acme");
  AddHubFlags(status, hub_args);
  status->callback([&] { exit_code = FleetStatus(hub_args); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}
