#include "ctl/ctl_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>

#include "core/env.h"
#include "mirror/identity.h"

namespace ferry::ctl {

namespace {

constexpr uint64_t kMaxConfigBytes = 1 << 20;

std::string EnvOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string Where(const std::string& path, const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.line < 0) return path;
  return path + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

Status KeyError(const std::string& path, const YAML::Node& node, const std::string& key,
                const std::string& what) {
  return InvalidArgumentError(Where(path, node) + ": " + key + ": " + what);
}

Result<std::string> Scalar(const std::string& path, const YAML::Node& node,
                           const std::string& key) {
  if (!node.IsScalar()) return KeyError(path, node, key, "must be a string");
  return node.Scalar();
}

}  // namespace

std::string CtlConfig::DefaultPath() {
  if (std::string p = EnvOr("FERRY_CONFIG"); !p.empty()) return p;
  if (std::string x = EnvOr("XDG_CONFIG_HOME"); !x.empty()) return x + "/ferry/config.yaml";
  std::string home = EnvOr("HOME");
  if (home.empty()) home = ".";
  return home + "/.config/ferry/config.yaml";
}

Status CheckContextName(const std::string& name) {
  if (name.empty() || name.size() > 63 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") != std::string::npos) {
    return InvalidArgumentError("hub name '" + name +
                                "': use 1-63 characters of a-z, 0-9, '-', '_' and '.'");
  }
  return OkStatus();
}

Result<CtlConfig> CtlConfig::Load(const std::string& path) {
  CtlConfig config;
  config.path = path;
  Env& env = *Env::Default();
  ASSIGN_OR_RETURN(bool exists, env.FileExists(path));
  if (!exists) return config;
  ASSIGN_OR_RETURN(Bytes bytes, env.ReadFile(path, kMaxConfigBytes));
  YAML::Node root;
  try {
    root = YAML::Load(std::string(bytes.begin(), bytes.end()));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) +
                                ": not valid YAML: " + e.msg);
  }
  if (root.IsNull()) return config;
  if (!root.IsMap())
    return InvalidArgumentError(path + ": must be a mapping (apiVersion, hubs, …)");
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.Scalar();
      const YAML::Node& v = kv.second;
      if (key == "apiVersion") {
        ASSIGN_OR_RETURN(std::string s, Scalar(path, v, key));
        if (s != "ferry/v1") return KeyError(path, v, key, "must be ferry/v1, got " + s);
      } else if (key == "kind") {
        ASSIGN_OR_RETURN(std::string s, Scalar(path, v, key));
        if (s != "Config") return KeyError(path, v, key, "must be Config, got " + s);
      } else if (key == "currentHub") {
        ASSIGN_OR_RETURN(config.current_hub, Scalar(path, v, key));
      } else if (key == "hubs") {
        if (v.IsNull()) continue;
        if (!v.IsSequence()) return KeyError(path, v, key, "must be a list of hubs");
        for (size_t i = 0; i < v.size(); ++i) {
          const YAML::Node& h = v[i];
          const std::string at = "hubs[" + std::to_string(i) + "]";
          if (!h.IsMap()) return KeyError(path, h, at, "must be a mapping (name, url, token, …)");
          HubContext c;
          for (const auto& hkv : h) {
            const std::string hk = hkv.first.Scalar();
            const std::string full = at + "." + hk;
            std::string* field = hk == "name"          ? &c.name
                                 : hk == "url"         ? &c.url
                                 : hk == "token"       ? &c.token
                                 : hk == "fingerprint" ? &c.fingerprint
                                 : hk == "tenant"      ? &c.tenant
                                                       : nullptr;
            if (field == nullptr) {
              return KeyError(path, hkv.first, full,
                              "unknown key (known: name, url, token, fingerprint, tenant)");
            }
            ASSIGN_OR_RETURN(*field, Scalar(path, hkv.second, full));
          }
          if (Status s = CheckContextName(c.name); !s.ok()) {
            return KeyError(path, h, at + ".name", s.message());
          }
          if (c.url.empty()) return KeyError(path, h, at + ".url", "is required");
          if (!c.fingerprint.empty() && !mirror::ParseFingerprint(c.fingerprint).ok()) {
            return KeyError(path, h, at + ".fingerprint",
                            "not a hub fingerprint (fry1:xxxx-xxxx-..., as ferry-hub init prints "
                            "it), got " +
                                c.fingerprint);
          }
          if (config.Find(c.name) != nullptr) {
            return KeyError(path, h, at + ".name", "'" + c.name + "' is listed twice");
          }
          config.hubs.push_back(std::move(c));
        }
      } else {
        return KeyError(path, kv.first, key,
                        "unknown key (known: apiVersion, kind, currentHub, hubs)");
      }
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!config.current_hub.empty() && config.Find(config.current_hub) == nullptr) {
    return InvalidArgumentError(path + ": currentHub '" + config.current_hub +
                                "' is not one of the hubs listed");
  }
  return config;
}

Status CtlConfig::Save() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << "ferry/v1";
  out << YAML::Key << "kind" << YAML::Value << "Config";
  if (!current_hub.empty()) out << YAML::Key << "currentHub" << YAML::Value << current_hub;
  out << YAML::Key << "hubs" << YAML::Value << YAML::BeginSeq;
  for (const HubContext& c : hubs) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << c.name;
    out << YAML::Key << "url" << YAML::Value << c.url;
    if (!c.token.empty()) out << YAML::Key << "token" << YAML::Value << c.token;
    if (!c.fingerprint.empty()) out << YAML::Key << "fingerprint" << YAML::Value << c.fingerprint;
    if (!c.tenant.empty()) out << YAML::Key << "tenant" << YAML::Value << c.tenant;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  if (!out.good()) return InternalError("writing " + path + ": " + out.GetLastError());
  std::string text =
      "# ferryctl's hubs (ferryctl config add-hub|use|list). Holds API tokens: "
      "keep it mode 0600.\n";
  text += out.c_str();
  text += "\n";
  Env& env = *Env::Default();
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    RETURN_IF_ERROR(env.CreateDirs(path.substr(0, slash), 0700));
  }
  return WriteFileAtomic(env, path, AsBytes(text), 0600);
}

const HubContext* CtlConfig::Find(const std::string& name) const {
  for (const HubContext& c : hubs) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void CtlConfig::Upsert(HubContext context) {
  for (HubContext& c : hubs) {
    if (c.name == context.name) {
      c = std::move(context);
      return;
    }
  }
  hubs.push_back(std::move(context));
}

Result<ResolvedHub> ResolveHub(const CtlConfig& config, const HubSelection& flags) {
  ResolvedHub out;
  std::string hub = flags.hub;
  std::string from = "--hub";
  if (hub.empty()) {
    hub = EnvOr("FERRY_HUB");
    from = "FERRY_HUB";
  }
  if (hub.empty()) {
    hub = config.current_hub;
    from = "the current hub of " + config.path;
  }
  if (hub.empty()) {
    return InvalidArgumentError(
        "no hub given: pass --hub URL (or set FERRY_HUB), or save one with `ferryctl config "
        "add-hub NAME --url http://HOST:PORT --token TOKEN` (it becomes the current hub)");
  }
  if (hub.find("://") != std::string::npos) {
    out.url = hub;
  } else if (const HubContext* c = config.Find(hub)) {
    out.context = c->name;
    out.url = c->url;
    out.token = c->token;
    out.fingerprint = c->fingerprint;
    out.tenant = c->tenant;
  } else {
    std::string known;
    for (const HubContext& h : config.hubs) known += (known.empty() ? "" : ", ") + h.name;
    return NotFoundError("hub '" + hub + "' (from " + from + ") is neither a URL nor a hub in " +
                         config.path +
                         (known.empty() ? " (it lists none)" : " (known: " + known + ")"));
  }
  if (!flags.token.empty()) {
    out.token = flags.token;
  } else if (std::string t = EnvOr("FERRY_TOKEN"); !t.empty()) {
    out.token = t;
  }
  if (!flags.tenant.empty()) {
    out.tenant = flags.tenant;
  } else if (std::string t = EnvOr("FERRY_TENANT"); !t.empty()) {
    out.tenant = t;
  }
  return out;
}

}  // namespace ferry::ctl
