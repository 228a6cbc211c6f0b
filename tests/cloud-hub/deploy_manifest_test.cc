// The deployment files against the real ferry-hub binary:
//  - configs/hub.yaml, the commented sample: passes `run --check`, documents
//    every `run` flag with its environment variable, and holds each flag's
//    built-in default;
//  - configs/k8s/*.yaml, the Kubernetes manifests: the pod is simulated on
//    the local filesystem (each volume mount relocated under a temp dir, the
//    ConfigMap written where it is mounted). The init container's command
//    initializes the data dir (and is a no-op the second time), the hub
//    container's command passes `--check`, the probes and the Service hit
//    the port `listen` names, and the hub started with the container's
//    command answers the probe paths and accepts the first admin token.
// Renaming a flag, moving a probe, or changing the port on one side only
// fails here.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace ferry::hub {
namespace {

using ::ferry::testing::BinDir;
using ::ferry::testing::ChildProcess;
using ::ferry::testing::CommandResult;
using ::ferry::testing::MakeDirsOrDie;
using ::ferry::testing::ReadFileOrDie;
using ::ferry::testing::RunCommand;
using ::ferry::testing::TempDir;
using ::ferry::testing::WaitForFile;
using ::ferry::testing::WriteFileOrDie;

// The repository root: $FERRY_SOURCE_DIR, or two levels above this file when
// it is not set (run outside CTest).
std::string SourceDir() {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return src;
  const std::string here = __FILE__;  // tests/cloud-hub/deploy_manifest_test.cc
  return here.substr(0, here.rfind('/')) + "/../..";
}

std::string HubBinary() { return BinDir() + "/ferry-hub"; }

std::string ReadText(const std::string& path) {
  const Bytes data = ReadFileOrDie(path);
  return std::string(data.begin(), data.end());
}

void WriteText(const std::string& path, const std::string& text, int mode = 0644) {
  WriteFileOrDie(path, ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()), mode);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// ---- `ferry-hub run --help` ----

struct HelpOption {
  std::string default_value;  // "" when the help shows none
  std::string env;            // "" when the option has no environment variable
};

// The options of `ferry-hub run`, by flag ("--listen"), from its help text:
//   --listen TEXT=0.0.0.0:7070 (Env:FERRY_HUB_LISTEN)
std::map<std::string, HelpOption> RunOptionsFromHelp() {
  const CommandResult help = RunCommand({HubBinary(), "run", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  std::map<std::string, HelpOption> options;
  const std::regex line_re(
      R"(^\s+(--[a-z0-9-]+)(?:\s+[A-Z]+(?:=(\S+))?)?(?:\s+\(Env:([A-Za-z0-9_]+)\))?)");
  std::istringstream in(help.out);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, line_re)) continue;
    options[m[1]] = HelpOption{m[2], m[3]};
  }
  EXPECT_TRUE(options.count("--config")) << "no --config in `ferry-hub run --help`:\n" << help.out;
  return options;
}

// ---- `run --check` output ----

struct CheckedConfig {
  std::string host;
  int port = -1;
  std::string data_dir;
  int64_t shutdown_grace_s = -1;
};

// Parses "config ok: listen HOST:PORT, data dir DIR, ..., shutdown grace Ns, ...".
std::optional<CheckedConfig> ParseCheckOutput(const std::string& out) {
  const std::regex re(R"(config ok: listen (.*):(\d+), data dir ([^,]+), .*shutdown grace (\d+)s)");
  std::smatch m;
  if (!std::regex_search(out, m, re)) return std::nullopt;
  CheckedConfig c;
  c.host = m[1];
  c.port = std::stoi(m[2]);
  c.data_dir = m[3];
  c.shutdown_grace_s = std::stoll(m[4]);
  return c;
}

// ---- HTTP ----

// GET `target` on 127.0.0.1:`port`; the status code, or -1 when there was
// no HTTP answer. `body` gets everything after the headers.
int HttpGet(uint16_t port, const std::string& target, const std::string& token = "",
            std::string* body = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: ferry-hub\r\nConnection: close\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  request += "\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  std::smatch m;
  if (!std::regex_search(response, m, std::regex(R"(^HTTP/1\.[01] (\d{3}) )"))) return -1;
  if (body != nullptr) {
    const size_t end = response.find("\r\n\r\n");
    *body = end == std::string::npos ? "" : response.substr(end + 4);
  }
  return std::stoi(m[1]);
}

// ---- Manifests ----

struct Manifest {
  std::string file;
  YAML::Node doc;
  std::string kind() const { return doc["kind"] ? doc["kind"].as<std::string>() : ""; }
  std::string name() const {
    return doc["metadata"] && doc["metadata"]["name"] ? doc["metadata"]["name"].as<std::string>()
                                                      : "";
  }
};

std::vector<std::string> YamlFilesIn(const std::string& dir) {
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 5 && (name.ends_with(".yaml") || name.ends_with(".yml"))) {
        files.push_back(dir + "/" + name);
      }
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Every document of every configs/k8s/*.yaml (what `kubectl apply -f
// configs/k8s/` applies), or of `subdir` under it.
std::vector<Manifest> LoadManifests(const std::string& subdir = "") {
  std::vector<Manifest> out;
  const std::string dir = SourceDir() + "/configs/k8s" + (subdir.empty() ? "" : "/" + subdir);
  for (const std::string& file : YamlFilesIn(dir)) {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(ReadText(file));
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << file << ": " << e.what();
      continue;
    }
    for (const YAML::Node& doc : docs) {
      if (doc && doc.IsMap()) out.push_back({file, doc});
    }
  }
  return out;
}

std::vector<Manifest> OfKind(const std::vector<Manifest>& all, const std::string& kind) {
  std::vector<Manifest> out;
  for (const Manifest& m : all) {
    if (m.kind() == kind) out.push_back(m);
  }
  return out;
}

std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> out;
  if (list && list.IsSequence()) {
    for (const YAML::Node& n : list) out.push_back(n.as<std::string>());
  }
  return out;
}

// A probe's or Service's port: a number, or the name of one of the
// container's ports. -1 when it resolves to nothing.
int ResolvePort(const YAML::Node& container, const YAML::Node& port) {
  if (!port) return -1;
  const std::string text = port.as<std::string>();
  if (!text.empty() && std::all_of(text.begin(), text.end(),
                                   [](unsigned char ch) { return std::isdigit(ch) != 0; })) {
    return std::stoi(text);
  }
  for (const YAML::Node& p : container["ports"]) {
    if (p["name"] && p["name"].as<std::string>() == text) return p["containerPort"].as<int>();
  }
  return -1;
}

// Rewrites every occurrence of a mount path (as a whole path component) to
// where this test put that volume. One pass, longest paths first, so a
// replacement is never rewritten again.
std::string Relocate(const std::string& s,
                     const std::vector<std::pair<std::string, std::string>>& mounts) {
  auto path_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  };
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    bool replaced = false;
    if (i == 0 || (!path_char(s[i - 1]) && s[i - 1] != '/')) {
      for (const auto& [from, to] : mounts) {
        const size_t end = i + from.size();
        if (s.compare(i, from.size(), from) == 0 && (end == s.size() || !path_char(s[end]))) {
          out += to;
          i = end;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out += s[i++];
  }
  return out;
}

// The hub's StatefulSet run as a pod on the local filesystem.
class DeployManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    all_ = LoadManifests();
    ASSERT_FALSE(all_.empty()) << "no manifests in " << SourceDir() << "/configs/k8s";
    const std::vector<Manifest> sets = OfKind(all_, "StatefulSet");
    ASSERT_EQ(sets.size(), 1u) << "expected one StatefulSet in configs/k8s";
    sts_ = sets[0].doc;
    pod_ = sts_["spec"]["template"]["spec"];
    ASSERT_TRUE(pod_.IsMap());
    for (const YAML::Node& c : pod_["containers"]) {
      const std::vector<std::string> cmd = Strings(c["command"]);
      if (!cmd.empty() && Basename(cmd[0]) == "ferry-hub") hub_ = c;
    }
    ASSERT_TRUE(hub_) << "no container runs ferry-hub (command[0])";
    ASSERT_TRUE(pod_["initContainers"] && pod_["initContainers"].size() == 1)
        << "expected one init container (data dir initialization)";
    init_ = pod_["initContainers"][0];

    // The volumes: claim templates -> pvc-<name>, ConfigMaps -> written out,
    // emptyDirs -> empty dirs.
    for (const YAML::Node& t : sts_["spec"]["volumeClaimTemplates"]) {
      const std::string name = t["metadata"]["name"].as<std::string>();
      volume_dirs_[name] = dir_.Sub("pvc-" + name);
      pvc_volumes_.insert(name);
      MakeDirsOrDie(volume_dirs_[name]);
    }
    ASSERT_EQ(pvc_volumes_.size(), 1u) << "expected one volumeClaimTemplate (the data dir)";
    for (const YAML::Node& v : pod_["volumes"]) {
      const std::string name = v["name"].as<std::string>();
      volume_dirs_[name] = dir_.Sub("vol-" + name);
      MakeDirsOrDie(volume_dirs_[name]);
    }
    // ConfigMap files, with the container paths in them (dataDir) relocated
    // as the hub container mounts them.
    const auto hub_mounts = Mounts(hub_);
    for (const YAML::Node& v : pod_["volumes"]) {
      const std::string name = v["name"].as<std::string>();
      if (v["configMap"]) {
        const std::string cm_name = v["configMap"]["name"].as<std::string>();
        std::optional<Manifest> cm;
        for (const Manifest& m : OfKind(all_, "ConfigMap")) {
          if (m.name() == cm_name) cm = m;
        }
        ASSERT_TRUE(cm) << "volume " << name << " names ConfigMap " << cm_name
                        << ", which configs/k8s does not define";
        for (const auto& kv : cm->doc["data"]) {
          const std::string key = kv.first.as<std::string>();
          WriteText(volume_dirs_[name] + "/" + key,
                    Relocate(kv.second.as<std::string>(), hub_mounts));
        }
      }
    }
  }

  // mountPath -> local directory, for one container, longest first.
  std::vector<std::pair<std::string, std::string>> Mounts(const YAML::Node& container) {
    std::vector<std::pair<std::string, std::string>> mounts;
    for (const YAML::Node& m : container["volumeMounts"]) {
      const std::string volume = m["name"].as<std::string>();
      EXPECT_TRUE(volume_dirs_.count(volume)) << "mount of undeclared volume " << volume;
      std::string local = volume_dirs_[volume];
      if (m["subPath"]) local += "/" + m["subPath"].as<std::string>();
      mounts.emplace_back(m["mountPath"].as<std::string>(), local);
    }
    std::sort(mounts.begin(), mounts.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    return mounts;
  }

  // The local directory of the data volume (the claim template) as mounted in
  // `container`; "" when it is not mounted there.
  std::string PvcMountPath(const YAML::Node& container) {
    for (const YAML::Node& m : container["volumeMounts"]) {
      if (pvc_volumes_.count(m["name"].as<std::string>())) return m["mountPath"].as<std::string>();
    }
    return "";
  }

  // The container's command + args with mount paths relocated and the
  // ferry-hub binary (argv[0]) replaced by the one under test.
  std::vector<std::string> HubArgv() {
    std::vector<std::string> argv = Strings(hub_["command"]);
    for (const std::string& a : Strings(hub_["args"])) argv.push_back(a);
    const auto mounts = Mounts(hub_);
    for (std::string& a : argv) a = Relocate(a, mounts);
    argv[0] = HubBinary();
    return argv;
  }

  std::vector<std::string> HubEnv() {
    std::vector<std::string> env;
    const auto mounts = Mounts(hub_);
    for (const YAML::Node& e : hub_["env"]) {
      if (e["value"]) {
        env.push_back(e["name"].as<std::string>() + "=" +
                      Relocate(e["value"].as<std::string>(), mounts));
      }
    }
    return env;
  }

  // Runs the init container's command: `ferry-hub ...` directly, or a
  // `sh -c SCRIPT` with the binary under test first on PATH.
  CommandResult RunInit() {
    std::vector<std::string> argv = Strings(init_["command"]);
    for (const std::string& a : Strings(init_["args"])) argv.push_back(a);
    EXPECT_FALSE(argv.empty()) << "the init container has no command";
    if (argv.empty()) return {};
    const auto mounts = Mounts(init_);
    for (std::string& a : argv) a = Relocate(a, mounts);
    if (Basename(argv[0]) == "ferry-hub") {
      argv[0] = HubBinary();
    } else {
      EXPECT_TRUE(Basename(argv[0]) == "sh" || Basename(argv[0]) == "bash")
          << "init command: expected ferry-hub or a shell, got " << argv[0];
      EXPECT_EQ(argv.size(), 3u);
      EXPECT_EQ(argv[1], "-c");
      if (argv.size() != 3) return {};
      argv[2] = "PATH='" + BinDir() + "':\"$PATH\"; export PATH\n" + argv[2];
    }
    return RunCommand(argv);
  }

  // The effective configuration of the hub container, from `--check`.
  CheckedConfig Check() {
    std::vector<std::string> argv = HubArgv();
    argv.push_back("--check");
    const CommandResult r = RunCommand(argv, HubEnv());
    EXPECT_EQ(r.exit_code, 0) << "the hub container's command fails --check:\n" << r.err << r.out;
    std::optional<CheckedConfig> c = ParseCheckOutput(r.out);
    EXPECT_TRUE(c) << "unexpected --check output: " << r.out;
    return c.value_or(CheckedConfig{});
  }

  TempDir dir_;
  std::vector<Manifest> all_;
  YAML::Node sts_, pod_, hub_, init_;
  std::map<std::string, std::string> volume_dirs_;
  std::set<std::string> pvc_volumes_;
};

TEST_F(DeployManifestTest, ManifestsAreNamespaceAgnosticAndComplete) {
  std::set<std::string> kinds;
  for (const Manifest& m : all_) {
    EXPECT_TRUE(m.doc["apiVersion"]) << m.file;
    EXPECT_FALSE(m.name().empty()) << m.file << ": " << m.kind() << " without metadata.name";
    EXPECT_FALSE(m.doc["metadata"]["namespace"])
        << m.file << ": " << m.name() << " names a namespace (use kubectl -n)";
    kinds.insert(m.kind());
  }
  for (const char* kind : {"StatefulSet", "Service", "ConfigMap"}) {
    EXPECT_TRUE(kinds.count(kind)) << "configs/k8s has no " << kind;
  }
  EXPECT_EQ(sts_["metadata"]["name"].as<std::string>(), "ferry-hub");
  EXPECT_EQ(sts_["spec"]["replicas"].as<int>(), 1) << "one hub per data dir";
}

TEST_F(DeployManifestTest, HubCommandPassesCheckWithTheConfigMap) {
  const CheckedConfig c = Check();
  // The data dir is on the claim, as mounted in the hub container.
  const std::string pvc = PvcMountPath(hub_);
  ASSERT_FALSE(pvc.empty()) << "the hub container does not mount the data volume";
  const std::string pvc_local = Relocate(pvc, Mounts(hub_));
  EXPECT_TRUE(c.data_dir.rfind(pvc_local + "/", 0) == 0 || c.data_dir == pvc_local)
      << "dataDir " << c.data_dir << " is not on the data volume (" << pvc << ")";
  // Kubernetes must not SIGKILL the hub inside its own drain.
  ASSERT_TRUE(pod_["terminationGracePeriodSeconds"]);
  EXPECT_GT(pod_["terminationGracePeriodSeconds"].as<int64_t>(), c.shutdown_grace_s + 5)
      << "terminationGracePeriodSeconds must exceed shutdownGrace (" << c.shutdown_grace_s
      << "s) plus the final flush";
}

TEST_F(DeployManifestTest, ProbesServiceAndContainerPortUseTheListenPort) {
  const CheckedConfig c = Check();
  ASSERT_GT(c.port, 0);
  EXPECT_EQ(c.host, "0.0.0.0") << "the hub must listen on all pod addresses for the Service";

  bool declared = false;
  for (const YAML::Node& p : hub_["ports"]) declared |= p["containerPort"].as<int>() == c.port;
  EXPECT_TRUE(declared) << "no containerPort " << c.port;

  const std::map<std::string, std::string> probes = {
      {"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}, {"startupProbe", "/healthz"}};
  for (const auto& [probe, path] : probes) {
    const YAML::Node p = hub_[probe];
    if (probe == "startupProbe" && !p) continue;  // optional
    ASSERT_TRUE(p && p["httpGet"]) << probe << ": expected an httpGet probe";
    EXPECT_EQ(p["httpGet"]["path"].as<std::string>(), path) << probe;
    EXPECT_EQ(ResolvePort(hub_, p["httpGet"]["port"]), c.port) << probe << " port";
  }

  // The Service that selects the pod reaches the same port.
  const YAML::Node labels = sts_["spec"]["template"]["metadata"]["labels"];
  int services = 0;
  for (const Manifest& m : OfKind(all_, "Service")) {
    bool selects = m.doc["spec"]["selector"] && m.doc["spec"]["selector"].size() > 0;
    for (const auto& kv : m.doc["spec"]["selector"]) {
      const std::string k = kv.first.as<std::string>();
      selects &= labels[k] && labels[k].as<std::string>() == kv.second.as<std::string>();
    }
    if (!selects) continue;
    ++services;
    ASSERT_TRUE(m.doc["spec"]["ports"] && m.doc["spec"]["ports"].size() > 0) << m.name();
    for (const YAML::Node& p : m.doc["spec"]["ports"]) {
      const YAML::Node target = p["targetPort"] ? p["targetPort"] : p["port"];
      EXPECT_EQ(ResolvePort(hub_, target), c.port) << "Service " << m.name() << " targetPort";
    }
  }
  EXPECT_GE(services, 1) << "no Service selects the hub's pod labels";
  EXPECT_TRUE(sts_["spec"]["serviceName"]);
}

TEST_F(DeployManifestTest, PodIsLockedDown) {
  EXPECT_FALSE(pod_["enableServiceLinks"].as<bool>(true))
      << "service links inject FERRY_HUB_* variables (the hub's own prefix)";
  const YAML::Node psc = pod_["securityContext"];
  ASSERT_TRUE(psc);
  EXPECT_TRUE(psc["runAsNonRoot"].as<bool>(false));
  EXPECT_GT(psc["runAsUser"].as<int>(0), 0);
  EXPECT_TRUE(psc["fsGroup"]) << "the non-root hub must be able to write the volume";
  for (const YAML::Node& c : {hub_, init_}) {
    const std::string name = c["name"].as<std::string>();
    const YAML::Node sc = c["securityContext"];
    ASSERT_TRUE(sc) << name;
    EXPECT_TRUE(sc["readOnlyRootFilesystem"].as<bool>(false)) << name;
    EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>(true)) << name;
    EXPECT_FALSE(sc["privileged"].as<bool>(false)) << name;
    EXPECT_TRUE(c["resources"]["requests"]["memory"]) << name;
    EXPECT_TRUE(c["resources"]["limits"]["memory"]) << name;
    EXPECT_EQ(c["image"].as<std::string>(), hub_["image"].as<std::string>())
        << "the init container must run the hub's image";
  }
  EXPECT_TRUE(hub_["resources"]["requests"]["cpu"]);
}

TEST_F(DeployManifestTest, InitContainerInitializesOnceAndHubServesProbes) {
  const CheckedConfig c = Check();
  ASSERT_FALSE(c.data_dir.empty());
  // Both containers see the data volume at the same path (the init
  // container's data dir is the hub's).
  ASSERT_EQ(PvcMountPath(init_), PvcMountPath(hub_));

  const CommandResult first = RunInit();
  ASSERT_EQ(first.exit_code, 0) << "init container:\n" << first.err << first.out;
  ASSERT_TRUE(FileExists(c.data_dir + "/hub.key"))
      << "the init container did not create " << c.data_dir << " (the hub's dataDir)";

  // The init output with the first admin token is on the volume, 0600, and
  // not in the init container's log.
  const std::string pvc_local = volume_dirs_[*pvc_volumes_.begin()];
  std::string token_file, token;
  DIR* d = ::opendir(pvc_local.c_str());
  ASSERT_NE(d, nullptr);
  while (struct dirent* e = ::readdir(d)) {
    const std::string file = pvc_local + "/" + e->d_name;
    struct stat st;
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const std::string text = ReadText(file);
    std::smatch m;
    if (std::regex_search(text, m, std::regex(R"(admin token[^:\n]*: (\S+))"))) {
      token_file = file;
      token = m[1];
      EXPECT_EQ(st.st_mode & 077, 0u) << file << " holds the admin token: mode must be 0600";
    }
  }
  ::closedir(d);
  ASSERT_FALSE(token.empty()) << "the init container left no file with the admin token on the "
                                 "data volume (docs/deploy.md tells the operator to read it)";
  EXPECT_EQ((first.out + first.err).find(token), std::string::npos)
      << "the admin token went to the init container's log";

  // A restart: init is a no-op and changes nothing.
  const Bytes key = ReadFileOrDie(c.data_dir + "/hub.key");
  const std::string saved = ReadText(token_file);
  const CommandResult again = RunInit();
  ASSERT_EQ(again.exit_code, 0) << "init container on an initialized volume:\n"
                                << again.err << again.out;
  EXPECT_EQ(ReadFileOrDie(c.data_dir + "/hub.key"), key);
  EXPECT_EQ(ReadText(token_file), saved);

  // The hub container's command, on a free loopback port (flags beat the
  // config file), serves the probe paths and accepts the token.
  std::vector<std::string> argv = HubArgv();
  const std::string port_file = dir_.Sub("hub.port");
  for (const std::string& a : {std::string("--listen"), std::string("127.0.0.1:0"),
                               std::string("--port-file"), port_file}) {
    argv.push_back(a);
  }
  ASSERT_TRUE(HubEnv().empty()) << "extend this test to pass the container's env to the hub";
  ChildProcess hub(argv, dir_.Sub("hub.log"));
  const uint16_t port = static_cast<uint16_t>(std::stoi(WaitForFile(port_file, &hub)));
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
    if (!hub_[probe]) continue;
    const std::string path = hub_[probe]["httpGet"]["path"].as<std::string>();
    std::string body;
    EXPECT_EQ(HttpGet(port, path, "", &body), 200) << probe << " GET " << path << ": " << body;
  }
  std::string body;
  EXPECT_EQ(HttpGet(port, "/v1/tenants", token, &body), 200) << body;
  EXPECT_EQ(HttpGet(port, "/metrics", "", &body), 200);
  EXPECT_EQ(hub.Stop(SIGTERM), 0) << hub.Log();
}

// Every Secret a manifest (examples included) refers to is one docs/deploy.md
// tells the operator to create, with that key.
TEST(DeployDocsTest, SecretsReferencedAreDocumented) {
  const std::string docs = ReadText(SourceDir() + "/docs/deploy.md");
  std::vector<Manifest> all = LoadManifests();
  for (const Manifest& m : LoadManifests("examples")) all.push_back(m);
  int refs = 0;
  std::function<void(const YAML::Node&)> walk = [&](const YAML::Node& n) {
    if (n.IsMap()) {
      if (n["secretKeyRef"]) {
        const std::string name = n["secretKeyRef"]["name"].as<std::string>();
        const std::string key = n["secretKeyRef"]["key"].as<std::string>();
        ++refs;
        EXPECT_NE(docs.find("create secret generic " + name), std::string::npos)
            << "docs/deploy.md does not say how to create Secret " << name;
        EXPECT_NE(docs.find(key + "="), std::string::npos)
            << "docs/deploy.md does not set key " << key << " of Secret " << name;
      }
      for (const auto& kv : n) walk(kv.second);
    } else if (n.IsSequence()) {
      for (const YAML::Node& e : n) walk(e);
    }
  };
  for (const Manifest& m : all) walk(m.doc);
  EXPECT_GE(refs, 1) << "no manifest shows how clients get the admin token Secret";
}

// The Dockerfile agrees with the StatefulSet: the user the pod runs as, the
// port, the entrypoint.
TEST_F(DeployManifestTest, DockerfileMatchesTheStatefulSet) {
  const std::string dockerfile = ReadText(SourceDir() + "/configs/k8s/Dockerfile");
  const CheckedConfig c = Check();
  const YAML::Node psc = pod_["securityContext"];
  const std::string user = psc["runAsUser"].as<std::string>() + ":" +
                           psc["runAsGroup"].as<std::string>(psc["fsGroup"].as<std::string>(""));
  EXPECT_NE(dockerfile.find("\nUSER " + user + "\n"), std::string::npos) << "USER " << user;
  EXPECT_NE(dockerfile.find("\nEXPOSE " + std::to_string(c.port) + "\n"), std::string::npos);
  EXPECT_NE(dockerfile.find("\nENTRYPOINT [\"ferry-hub\"]\n"), std::string::npos);
}

// ---- configs/hub.yaml ----

struct SampleKey {
  std::string key;      // dotted: "limits.maxSessions"
  std::string comment;  // the comment block right above it
};

// The leaf keys of the sample, with the comment block above each (yaml-cpp
// drops comments, so this reads the text: two-space indentation, one key a
// line, as the sample is written).
std::vector<SampleKey> SampleKeys(const std::string& text) {
  std::vector<SampleKey> keys;
  std::vector<std::pair<size_t, std::string>> parents;  // indent, name
  std::string comment;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t indent = line.find_first_not_of(' ');
    if (indent == std::string::npos) {
      comment.clear();
      continue;
    }
    const std::string body = line.substr(indent);
    if (body[0] == '#') {
      comment += body + "\n";
      continue;
    }
    const size_t colon = body.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = body.substr(0, colon);
    while (!parents.empty() && parents.back().first >= indent) parents.pop_back();
    std::string dotted;
    for (const auto& p : parents) dotted += p.second + ".";
    dotted += name;
    if (body.find_first_not_of(' ', colon + 1) == std::string::npos) {
      parents.emplace_back(indent, name);  // a mapping
    } else {
      keys.push_back({dotted, comment});
    }
    comment.clear();
  }
  return keys;
}

YAML::Node Lookup(const YAML::Node& root, const std::string& dotted) {
  YAML::Node node = YAML::Clone(root);
  size_t start = 0;
  while (true) {
    const size_t dot = dotted.find('.', start);
    const std::string part = dotted.substr(start, dot == std::string::npos ? dot : dot - start);
    if (!node.IsMap() || !node[part]) return YAML::Node(YAML::NodeType::Undefined);
    node = node[part];
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

std::string SamplePath() { return SourceDir() + "/configs/hub.yaml"; }

TEST(SampleConfigTest, PassesCheck) {
  TempDir dir;
  const CommandResult r = RunCommand(
      {HubBinary(), "run", "--config", SamplePath(), "--data-dir", dir.Sub("data"), "--check"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  std::optional<CheckedConfig> c = ParseCheckOutput(r.out);
  ASSERT_TRUE(c) << r.out;
  EXPECT_EQ(c->data_dir, dir.Sub("data")) << "--data-dir must beat the file";
}

// Each key names its flag and environment variable ("Flag --x, env
// FERRY_HUB_X"), which `run --help` confirms, and holds the flag's default;
// every `run` option is in the sample.
TEST(SampleConfigTest, DocumentsEveryOptionWithItsDefault) {
  const std::string text = ReadText(SamplePath());
  const YAML::Node root = YAML::Load(text);
  const std::map<std::string, HelpOption> options = RunOptionsFromHelp();
  const std::regex doc_re(R"(Flag (--[a-z0-9-]+), env ([A-Z0-9_]+))");
  std::set<std::string> documented;
  const std::vector<SampleKey> keys = SampleKeys(text);
  EXPECT_GE(keys.size(), 12u);
  for (const SampleKey& k : keys) {
    std::smatch m;
    if (!std::regex_search(k.comment, m, doc_re)) {
      ADD_FAILURE() << k.key << ": the comment above it must say \"Flag --x, env FERRY_HUB_X\"";
      continue;
    }
    const std::string flag = m[1], env = m[2];
    auto it = options.find(flag);
    if (it == options.end()) {
      ADD_FAILURE() << k.key << ": `ferry-hub run` has no flag " << flag;
      continue;
    }
    documented.insert(flag);
    EXPECT_EQ(env, it->second.env) << k.key << ": the environment variable of " << flag;
    const YAML::Node value = Lookup(root, k.key);
    ASSERT_TRUE(value.IsDefined() && value.IsScalar()) << k.key;
    EXPECT_EQ(value.as<std::string>(), it->second.default_value)
        << k.key << ": the sample must hold the built-in default of " << flag;
  }
  for (const auto& [flag, option] : options) {
    if (option.env.empty() || flag == "--config") continue;  // --port-file, --check, --help
    EXPECT_TRUE(documented.count(flag))
        << "configs/hub.yaml does not document " << flag << " (" << option.env << ")";
  }
}

// The sample changes nothing: the effective configuration is the same with
// it and without a config file at all.
TEST(SampleConfigTest, EqualsTheBuiltInDefaults) {
  TempDir dir;
  const CommandResult with = RunCommand(
      {HubBinary(), "run", "--config", SamplePath(), "--data-dir", dir.Sub("data"), "--check"});
  const CommandResult without =
      RunCommand({HubBinary(), "run", "--data-dir", dir.Sub("data"), "--check"});
  ASSERT_EQ(with.exit_code, 0) << with.err;
  ASSERT_EQ(without.exit_code, 0) << "ferry-hub run --check without a config file: " << without.err;
  EXPECT_EQ(with.out, without.out);
}

}  // namespace
}  // namespace ferry::hub
