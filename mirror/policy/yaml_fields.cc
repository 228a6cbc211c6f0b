#include "mirror/policy/yaml_fields.h"

#include <yaml-cpp/depthguard.h>  // YAML::DeepRecursion
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace ferry::mirror::yaml_fields {

namespace {

constexpr size_t kMaxNameLength = 63;
constexpr size_t kMaxLabelPrefixLength = 253;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLowerAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// Counts the documents of a YAML stream without building them.
class DocumentCounter : public YAML::EventHandler {
 public:
  YAML::Mark second_start;  // where the second document starts, if any

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ == 2) second_start = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  int documents_ = 0;
};

}  // namespace

std::string Sanitize(std::string_view s) {
  std::string out;
  size_t n = 0;
  for (char ch : s) {
    if (n++ == 64) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string Quote(std::string_view s) { return "\"" + Sanitize(s) + "\""; }

std::string PathKey(std::string_view key) {
  const bool tame =
      !key.empty() && key.size() <= 64 && std::all_of(key.begin(), key.end(), [](char c) {
        return IsAlnum(c) || c == '-' || c == '_' || c == '.' || c == '/';
      });
  return tame ? std::string(key) : Quote(key);
}

std::string LineColumn(const YAML::Mark& mark) {
  return "line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
}

std::string Where(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return "";
  return " (" + LineColumn(mark) + ")";
}

Status FieldError(std::string_view path, const YAML::Mark& mark, std::string_view message) {
  return InvalidArgumentError((path.empty() ? std::string("document") : std::string(path)) + ": " +
                              std::string(message) + Where(mark));
}

std::string Child(std::string_view parent, std::string_view name) {
  return parent.empty() ? std::string(name) : std::string(parent) + "." + std::string(name);
}

std::string Index(std::string_view parent, size_t i) {
  return std::string(parent) + "[" + std::to_string(i) + "]";
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      // A quoted scalar is shown quoted: "4" is a string, 4 a number.
      return node.Tag() == "!" ? Quote(node.Scalar()) : Sanitize(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

Result<Mapping> Mapping::Open(const Field& field, std::initializer_list<std::string_view> known) {
  std::string known_list;
  for (std::string_view k : known) known_list += (known_list.empty() ? "" : ", ") + std::string(k);
  if (!field.node.IsMap()) {
    return field.Error("must be a mapping (" + known_list + "), got " + Describe(field.node));
  }
  const std::string noun = field.noun;
  Mapping m;
  m.path_ = field.path;
  m.mark_ = field.mark;
  // Copies: a yaml-cpp iterator's pair is a temporary (`it->first` dangles).
  for (auto it = field.node.begin(); it != field.node.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) return FieldError(field.path, key.Mark(), noun + " names must be strings");
    const std::string& name = key.Scalar();
    const std::string path = Child(field.path, PathKey(name));
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return FieldError(path, key.Mark(), "unknown " + noun + " (known: " + known_list + ")");
    }
    if (m.fields_.count(name) != 0) return FieldError(path, key.Mark(), "given twice");
    const YAML::Mark mark = value.IsNull() ? key.Mark() : value.Mark();
    m.fields_.emplace(name, Field{value, path, mark, field.noun});
  }
  return m;
}

const Field* Mapping::Get(std::string_view name) const {
  auto it = fields_.find(name);
  return it == fields_.end() ? nullptr : &it->second;
}

Result<const Field*> Mapping::Require(std::string_view name, std::string_view what) const {
  if (const Field* f = Get(name)) return f;
  return FieldError(Child(path_, name), mark_, "required: " + std::string(what));
}

Result<std::vector<Field>> List(const Field& field, size_t min, size_t max, std::string_view what) {
  if (!field.node.IsSequence()) {
    return field.Error("must be a list of " + std::string(what) + ", got " + Describe(field.node));
  }
  const size_t n = field.node.size();
  if (n < min) return field.Error("must list at least one of " + std::string(what));
  if (n > max) {
    return field.Error("at most " + std::to_string(max) + " " + std::string(what) + ", got " +
                       std::to_string(n));
  }
  std::vector<Field> items;
  size_t i = 0;
  for (auto it = field.node.begin(); it != field.node.end(); ++it, ++i) {
    const YAML::Node item = *it;
    items.push_back(
        Field{item, Index(field.path, i), item.IsNull() ? field.mark : item.Mark(), field.noun});
  }
  return items;
}

Result<std::string> String(const Field& field) {
  if (!field.node.IsScalar()) return field.Error("must be a string, got " + Describe(field.node));
  return field.node.Scalar();
}

bool LabelNameOk(std::string_view s, bool allow_empty) {
  if (s.empty()) return allow_empty;
  if (s.size() > kMaxNameLength || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool LabelKeyOk(std::string_view key) {
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos) return LabelNameOk(key, false);
  const std::string_view prefix = key.substr(0, slash);
  if (prefix.empty() || prefix.size() > kMaxLabelPrefixLength || !IsLowerAlnum(prefix.front()) ||
      !IsLowerAlnum(prefix.back()) || !std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return IsLowerAlnum(c) || c == '-' || c == '.';
      })) {
    return false;
  }
  return LabelNameOk(key.substr(slash + 1), false);
}

Result<std::map<std::string, std::string>> Labels(const Field& field, size_t max_labels) {
  if (!field.node.IsMap()) {
    return field.Error("must be a mapping of label names to values, got " + Describe(field.node));
  }
  if (field.node.size() > max_labels) {
    return field.Error("at most " + std::to_string(max_labels) + " labels, got " +
                       std::to_string(field.node.size()));
  }
  std::map<std::string, std::string> labels;
  for (auto it = field.node.begin(); it != field.node.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node node = it->second;
    if (!key.IsScalar()) return FieldError(field.path, key.Mark(), "label names must be strings");
    const std::string& name = key.Scalar();
    const std::string path = Child(field.path, PathKey(name));
    if (!LabelKeyOk(name)) {
      return FieldError(path, key.Mark(),
                        "invalid label name " + Quote(name) +
                            ": 1-63 characters of letters, digits, '-', '_' and '.', starting "
                            "and ending with a letter or digit, optionally after a DNS prefix "
                            "and '/' (\"example.com/site\")");
    }
    const Field value{node, path, node.IsNull() ? key.Mark() : node.Mark(), field.noun};
    ASSIGN_OR_RETURN(std::string v, String(value));
    if (!LabelNameOk(v, true)) {
      return value.Error(
          "invalid label value " + Quote(v) +
          ": at most 63 characters of letters, digits, '-', '_' and '.', starting and ending "
          "with a letter or digit");
    }
    if (!labels.emplace(name, std::move(v)).second) {
      return FieldError(path, key.Mark(), "given twice");
    }
  }
  return labels;
}

std::string NameProblem(std::string_view name) {
  const bool ok =
      !name.empty() && name.size() <= kMaxNameLength && IsLowerAlnum(name[0]) &&
      std::all_of(name.begin(), name.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
  if (ok) return "";
  return "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit, got " +
         Quote(name);
}

Result<LoadedDocument> LoadDocument(std::string_view text) {
  const std::string owned(text);
  LoadedDocument out;
  DocumentCounter counter;
  try {
    std::istringstream in(owned);
    YAML::Parser parser(in);
    while (out.documents < 2 && parser.HandleNextDocument(counter)) ++out.documents;
    if (out.documents == 1) out.root = YAML::Load(owned);
  } catch (const YAML::DeepRecursion& e) {
    return InvalidArgumentError("document: YAML nested too deeply at " + LineColumn(e.mark));
  } catch (const YAML::Exception& e) {
    std::string message = "YAML syntax error";
    if (!e.mark.is_null()) message += " at " + LineColumn(e.mark);
    // yaml-cpp's message may hold a byte of the document ("unknown escape
    // character: X"): sanitized like any other user text.
    return InvalidArgumentError(message + ": " + Sanitize(e.msg));
  }
  out.second_start = counter.second_start;
  return out;
}

}  // namespace ferry::mirror::yaml_fields
