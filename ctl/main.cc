// ferryctl: the operator CLI. Command wiring only; the commands live in
// local_commands.cc.
#include <CLI/CLI.hpp>
#include <iostream>

#include "core/log.h"
#include "core/version.h"
#include "ctl/local_commands.h"

namespace {

constexpr char kExitCodes[] =
    "Exit codes: 0 ok, 1 error, 2 usage, 3 snapshot completed but some files could not be read "
    "consistently.";

}  // namespace

int main(int argc, char** argv) {
  using namespace ferry::ctl;
  ferry::log::Init({.level = ferry::log::Level::kWarn, .program = "ferryctl"});

  CLI::App app{"ferryctl: manage Ferry keys, snapshots and restores."};
  app.footer(kExitCodes);
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

  // snapshot
  CLI::App* snap = app.add_subcommand("snapshot", "Create, list and show snapshots");
  snap->require_subcommand(1);
  SnapshotCreateArgs create;
  CLI::App* snap_create = snap->add_subcommand(
      "create",
      "Capture a directory into a store (created if absent). Prints the snapshot id as the last "
      "line of stdout and a summary on stderr.\nExample: ferryctl snapshot create --store "
      "/var/lib/ferry/store --keyset agent.key --label site=shop /srv/data");
  snap_create->add_option("--store", create.store, "Store directory")->required();
  snap_create->add_option("--keyset", create.keyset, "Tenant keyset or agent key file")->required();
  snap_create->add_option("--label", create.labels, "Label key=value (repeatable)");
  snap_create->add_option("--name", create.dataset_name,
                          "Dataset name (default: the directory's name)");
  snap_create->add_flag("--json", create.json, "Print the summary as JSON on stdout");
  snap_create->add_flag("--no-cache", create.no_cache,
                        "Read every file even if the file cache says it is unchanged");
  snap_create->add_option("--workers", create.workers, "CPU workers (default: all CPUs)");
  snap_create->add_option("PATH", create.path, "Directory to capture")->required();
  snap_create->callback([&] { exit_code = SnapshotCreate(create); });

  SnapshotListArgs list;
  CLI::App* snap_list = snap->add_subcommand(
      "list",
      "List the snapshots in a store, oldest first.\nExample: ferryctl snapshot list "
      "--store /var/lib/ferry/store --json");
  snap_list->add_option("--store", list.store, "Store directory")->required();
  snap_list->add_flag("--json", list.json, "JSON output");
  snap_list->callback([&] { exit_code = SnapshotList(list); });

  SnapshotShowArgs show;
  CLI::App* snap_show =
      snap->add_subcommand("show",
                           "Show one snapshot's manifest.\nExample: ferryctl snapshot show --store "
                           "/var/lib/ferry/store 3f2a");
  snap_show->add_option("--store", show.store, "Store directory")->required();
  snap_show->add_flag("--json", show.json, "JSON output");
  snap_show->add_option("SNAPSHOT", show.snapshot, "Snapshot id, unique prefix, or 'latest'")
      ->required();
  snap_show->callback([&] { exit_code = SnapshotShow(show); });

  // restore
  RestoreArgs restore;
  CLI::App* rest = app.add_subcommand(
      "restore",
      "Restore a snapshot into a directory (absent or empty). With --path, the named file or "
      "folder is restored into DIR under its own name.\nExample: FERRY_PASSPHRASE=... ferryctl "
      "restore --store /var/lib/ferry/store --keyset tenant.keyset latest --to /tmp/restored");
  rest->add_option("--store", restore.store, "Store directory")->required();
  rest->add_option("--keyset", restore.keyset, "Tenant keyset file")->required();
  rest->add_option("--to", restore.to, "Target directory")->required();
  rest->add_option("--path", restore.path, "Restore only this file or folder of the snapshot");
  rest->add_option("--passphrase-file", restore.passphrase_file, "Read the passphrase from a file");
  rest->add_flag("--force", restore.force, "Restore into a non-empty directory, replacing files");
  rest->add_flag("--allow-external-symlinks", restore.allow_external_symlinks,
                 "Restore symlinks that point outside the target (absolute or ../ escapes)");
  rest->add_flag("--json", restore.json, "JSON summary on stdout");
  rest->add_option("--workers", restore.workers, "CPU workers (default: all CPUs)");
  rest->add_option("SNAPSHOT", restore.snapshot, "Snapshot id, unique prefix, or 'latest'")
      ->required();
  rest->callback([&] { exit_code = Restore(restore); });

  // verify
  VerifyArgs verify;
  CLI::App* ver = app.add_subcommand(
      "verify",
      "Read, decrypt and check every chunk of a snapshot.\nExample: FERRY_PASSPHRASE=... "
      "ferryctl verify --store /var/lib/ferry/store --keyset tenant.keyset latest");
  ver->add_option("--store", verify.store, "Store directory")->required();
  ver->add_option("--keyset", verify.keyset, "Tenant keyset file")->required();
  ver->add_option("--passphrase-file", verify.passphrase_file, "Read the passphrase from a file");
  ver->add_flag("--json", verify.json, "JSON summary on stdout");
  ver->add_option("--workers", verify.workers, "CPU workers (default: all CPUs)");
  ver->add_option("SNAPSHOT", verify.snapshot, "Snapshot id, unique prefix, or 'latest'")
      ->required();
  ver->callback([&] { exit_code = Verify(verify); });

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
