// Reading a YAML document field by field, with errors that name the field's
// path, line and column ("spec.targets[1].hub: must be a string, got a list
// (line 9, column 12)"): shared by mirror policies (mirror_policy.cc) and the
// agent's config (edge-agent/agent_config.cc), so that both refuse unknown
// and repeated keys, wrong types and bad labels the same way.
//
// Thread-safety: functions are thread-safe; values are not shared.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace ferry::mirror::yaml_fields {

// A user's text for an error message: printable ASCII kept, '"' and '\'
// escaped, other bytes as \xNN, cut after 64 characters.
std::string Sanitize(std::string_view s);
std::string Quote(std::string_view s);
// A key as it appears in a path: as is when it is tame, quoted otherwise.
std::string PathKey(std::string_view key);
std::string LineColumn(const YAML::Mark& mark);
// " (line L, column C)", or "" for a null mark.
std::string Where(const YAML::Mark& mark);
// kInvalidArgument "<path>: <message> (line L, column C)" ("document" for the root).
Status FieldError(std::string_view path, const YAML::Mark& mark, std::string_view message);
std::string Child(std::string_view parent, std::string_view name);
std::string Index(std::string_view parent, size_t i);
// What a node is, for "got ..." in messages: a quoted scalar shows quoted.
std::string Describe(const YAML::Node& node);

// One value of the document and where it came from.
struct Field {
  YAML::Node node;
  std::string path;  // "datasets[1].path"
  YAML::Mark mark;   // of the value; of its key when the value is null
  // What the document calls a mapping's keys in messages: "field" in
  // policies, "key" in configs. Children inherit it.
  const char* noun = "field";

  Status Error(std::string_view message) const { return FieldError(path, mark, message); }
};

// A mapping's keys, checked against the names it may have: unknown and
// repeated keys are errors.
class Mapping {
 public:
  static Result<Mapping> Open(const Field& field, std::initializer_list<std::string_view> known);
  const Field* Get(std::string_view name) const;
  // kInvalidArgument "<path>.<name>: required: <what>" when absent.
  Result<const Field*> Require(std::string_view name, std::string_view what) const;

 private:
  std::string path_;
  YAML::Mark mark_;
  std::map<std::string, Field, std::less<>> fields_;
};

// A list of `min` to `max` items of `what`.
Result<std::vector<Field>> List(const Field& field, size_t min, size_t max, std::string_view what);
// Any scalar, as written.
Result<std::string> String(const Field& field);

// Kubernetes label rules (docs/policies.md, "Labels").
bool LabelNameOk(std::string_view s, bool allow_empty);
bool LabelKeyOk(std::string_view key);
// A mapping of at most `max_labels` labels.
Result<std::map<std::string, std::string>> Labels(const Field& field, size_t max_labels);

// "" when `name` is a valid hub or policy name (1-63 of a-z, 0-9, '-',
// starting with a letter or digit), else why not.
std::string NameProblem(std::string_view name);

struct LoadedDocument {
  YAML::Node root;
  int documents = 0;        // 0, 1, or 2 (= more than one)
  YAML::Mark second_start;  // where the second document starts, if any
};
// Counts the documents of `text` without building them, stopping at two
// (YAML::LoadAll loops forever on some malformed input in yaml-cpp 0.7),
// then loads the first when it is the only one. Syntax errors and nesting
// too deep are kInvalidArgument with the line and column.
Result<LoadedDocument> LoadDocument(std::string_view text);

}  // namespace ferry::mirror::yaml_fields
