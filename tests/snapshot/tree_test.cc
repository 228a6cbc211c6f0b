#include "snapshot/tree.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "snapshot/types.h"
#include "tests/testing/test_util.h"

namespace ferry::snapshot {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

using ::ferry::testing::HasCode;

std::string Id(char fill) { return std::string(32, fill); }

void AddChunk(pb::Node& n, uint32_t size, char fill = 'c') {
  pb::ChunkRef* r = n.add_content();
  r->set_id(Id(fill));
  r->set_size(size);
}

pb::Node File(const std::string& name, uint64_t size) {
  pb::Node n;
  n.set_name(name);
  n.set_type(pb::NODE_TYPE_FILE);
  n.set_mode(0644);
  n.set_size(size);
  n.set_mtime_ns(1700000000000000001);
  if (size > 0) AddChunk(n, static_cast<uint32_t>(size));
  return n;
}

pb::Node Dir(const std::string& name) {
  pb::Node n;
  n.set_name(name);
  n.set_type(pb::NODE_TYPE_DIRECTORY);
  n.set_mode(0755);
  AddChunk(n, 300, 't');
  return n;
}

pb::Node Symlink(const std::string& name, const std::string& target) {
  pb::Node n;
  n.set_name(name);
  n.set_type(pb::NODE_TYPE_SYMLINK);
  n.set_mode(0777);
  n.set_symlink_target(target);
  return n;
}

Bytes Encode(const std::vector<pb::Node>& nodes) {
  pb::Tree t;
  for (const pb::Node& n : nodes) *t.add_nodes() = n;
  std::string s;
  EXPECT_TRUE(t.SerializeToString(&s));
  return ToBytes(s);
}

TEST(ValidateNameTest, AcceptsOnlySinglePathComponents) {
  const struct {
    const char* what;
    std::string name;
    bool ok;
  } kCases[] = {
      {"empty", "", false},
      {"dot", ".", false},
      {"dot dot", "..", false},
      {"three dots", "...", true},
      {"hidden file", ".profile", true},
      {"dot dot prefix", "..a", true},
      {"slash inside", "a/b", false},
      {"slash alone", "/", false},
      {"trailing slash", "a/", false},
      {"dot dot slash", "../etc", false},
      {"NUL inside", std::string("a\0b", 3), false},
      {"NUL alone", std::string(1, '\0'), false},
      {"255 bytes", std::string(255, 'n'), true},
      {"256 bytes", std::string(256, 'n'), false},
      {"invalid UTF-8", "\xff\xfe\xc0\x80", true},
      {"newline", "line\nbreak", true},
      {"carriage return and tab", "a\r\tb", true},
      {"backslash", "a\\b", true},
      {"space only", " ", true},
      {"UTF-8", "caf\xc3\xa9", true},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    Status s = ValidateName(AsBytes(c.name));
    if (c.ok) {
      EXPECT_TRUE(s.ok()) << s.ToString();
    } else {
      EXPECT_TRUE(HasCode(s, StatusCode::kInvalidArgument));
      EXPECT_FALSE(s.message().empty());
    }
  }
}

TEST(PrintableNameTest, EscapesEverythingButPrintableAscii) {
  EXPECT_EQ(PrintableName(AsBytes("plain name.txt")), "plain name.txt");
  EXPECT_EQ(PrintableName(AsBytes("a\nb")), "a\\x0ab");
  EXPECT_EQ(PrintableName(AsBytes("back\\slash")), "back\\x5cslash");
  EXPECT_EQ(PrintableName(AsBytes(std::string("\0\xff\x7f", 3))), "\\x00\\xff\\x7f");
}

TEST(DecodeTreeTest, AcceptsValidTrees) {
  pb::Node sparse = File("sparse", 1 << 20);
  sparse.clear_content();
  AddChunk(sparse, 4096, 'a');
  AddChunk(sparse, 100, 'b');
  pb::Extent* e1 = sparse.add_extents();
  e1->set_offset(0);
  e1->set_length(4096);
  pb::Extent* e2 = sparse.add_extents();
  e2->set_offset((1 << 20) - 100);
  e2->set_length(100);
  pb::Node linked = File("hardlinked", 10);
  linked.set_hardlink_id(7);
  pb::Node with_xattrs = File("xattrs", 0);
  pb::Xattr* x = with_xattrs.add_xattrs();
  x->set_name("user.comment");
  x->set_value(std::string(kMaxXattrValueSize, 'v'));
  pb::Node setuid = File("setuid", 0);
  setuid.set_mode(07777);
  pb::Node empty_dir = Dir("empty-dir");
  empty_dir.clear_content();
  const std::vector<pb::Node> nodes = {
      Dir("Dir"),
      File("a\nnewline", 3),
      File("all-data", 5000),
      File("empty", 0),
      empty_dir,
      linked,
      setuid,
      sparse,
      Symlink("symlink", std::string(kMaxSymlinkTargetSize, 't')),
      with_xattrs,
      File(std::string(255, 'z'), 1),
      File("\xff\xfe invalid utf-8", 1),  // 0xff sorts after every ASCII byte
  };
  Result<pb::Tree> t = DecodeTree(Encode(nodes), "test tree");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->nodes_size(), static_cast<int>(nodes.size()));
  for (size_t i = 0; i < nodes.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(t->nodes(static_cast<int>(i)), nodes[i])) << i;
  }
  EXPECT_TRUE(DecodeTree({}, "empty").ok()) << "an empty directory's tree is empty";
}

TEST(DecodeTreeTest, RejectsBadOrderAndHostileNames) {
  const struct {
    const char* what;
    std::vector<std::string> names;
  } kCases[] = {
      {"unsorted", {"b", "a"}},
      {"duplicate", {"a", "a"}},
      {"unsorted by bytes (0xff before ASCII)", {"\xff", "a"}},
      {"empty name", {""}},
      {"dot", {"a", "."}},
      {"dot dot", {".."}},
      {"slash inside", {"a/b"}},
      {"parent escape", {"../../etc"}},
      {"NUL inside", {std::string("x\0y", 3)}},
      {"256-byte name", {std::string(256, 'n')}},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    std::vector<pb::Node> nodes;
    for (const std::string& n : c.names) nodes.push_back(File(n, 1));
    Result<pb::Tree> t = DecodeTree(Encode(nodes), "dir/sub");
    ASSERT_TRUE(HasCode(t.status(), StatusCode::kDataLoss));
    EXPECT_THAT(t.status().message(), HasSubstr("dir/sub")) << "the message says where";
  }
}

TEST(DecodeTreeTest, RejectsInvalidNodes) {
  using Make = std::function<pb::Node()>;
  auto file_with_extents = [](uint64_t size, std::vector<std::pair<uint64_t, uint64_t>> extents,
                              uint32_t content) {
    return [=] {
      pb::Node n = File("f", size);
      n.clear_content();
      if (content > 0) AddChunk(n, content);
      for (const auto& [off, len] : extents) {
        pb::Extent* e = n.add_extents();
        e->set_offset(off);
        e->set_length(len);
      }
      return n;
    };
  };
  const struct {
    const char* what;
    Make make;
    const char* message;
  } kCases[] = {
      {"type unspecified",
       [] {
         pb::Node n = File("f", 0);
         n.set_type(pb::NODE_TYPE_UNSPECIFIED);
         return n;
       },
       "unknown node type"},
      {"type 99",
       [] {
         pb::Node n = File("f", 0);
         n.set_type(static_cast<pb::NodeType>(99));
         return n;
       },
       "unknown node type 99"},
      {"extents overlap", file_with_extents(100, {{0, 50}, {40, 20}}, 70), "extents"},
      {"extents unsorted", file_with_extents(100, {{50, 10}, {0, 10}}, 20), "extents"},
      {"extent runs past the size", file_with_extents(100, {{90, 20}}, 20), "extents"},
      {"extent starts past the size", file_with_extents(100, {{101, 1}}, 1), "extents"},
      {"extent of length zero", file_with_extents(100, {{10, 0}}, 0), "extents"},
      {"extent length overflows", file_with_extents(100, {{10, ~uint64_t{0} - 5}}, 0), "extents"},
      {"extents do not sum to the content", file_with_extents(100, {{0, 10}, {20, 10}}, 30),
       "extent lengths differ"},
      {"content larger than the size",
       [] {
         pb::Node n = File("f", 10);
         AddChunk(n, 1);
         return n;
       },
       "content size differs"},
      {"file with a symlink target",
       [] {
         pb::Node n = File("f", 0);
         n.set_symlink_target("x");
         return n;
       },
       "symlink target"},
      {"symlink without a target", [] { return Symlink("l", ""); }, "invalid symlink target"},
      {"symlink target with NUL", [] { return Symlink("l", std::string("a\0b", 3)); },
       "invalid symlink target"},
      {"symlink target too long",
       [] { return Symlink("l", std::string(kMaxSymlinkTargetSize + 1, 't')); },
       "invalid symlink target"},
      {"symlink with content",
       [] {
         pb::Node n = Symlink("l", "t");
         AddChunk(n, 5);
         return n;
       },
       "symlink with content"},
      {"symlink with hard link id",
       [] {
         pb::Node n = Symlink("l", "t");
         n.set_hardlink_id(3);
         return n;
       },
       "symlink with content"},
      {"directory with a symlink target",
       [] {
         pb::Node n = Dir("d");
         n.set_symlink_target("/etc");
         return n;
       },
       "directory with"},
      {"directory with extents",
       [] {
         pb::Node n = Dir("d");
         n.add_extents()->set_length(1);
         return n;
       },
       "directory with"},
      {"directory with a hard link id",
       [] {
         pb::Node n = Dir("d");
         n.set_hardlink_id(1);
         return n;
       },
       "directory with"},
      {"mode above 07777",
       [] {
         pb::Node n = File("f", 0);
         n.set_mode(010000);
         return n;
       },
       "mode"},
      {"chunk id of 31 bytes",
       [] {
         pb::Node n = File("f", 0);
         pb::ChunkRef* r = n.add_content();
         r->set_id(std::string(31, 'c'));
         return n;
       },
       "chunk id"},
      {"chunk over the size limit",
       [] {
         pb::Node n = File("f", uint64_t{kMaxChunkSize} + 1);
         return n;
       },
       "chunk larger"},
      {"xattr with an empty name",
       [] {
         pb::Node n = File("f", 0);
         n.add_xattrs()->set_value("v");
         return n;
       },
       "xattr name"},
      {"xattr name with NUL",
       [] {
         pb::Node n = File("f", 0);
         n.add_xattrs()->set_name(std::string("user.a\0b", 8));
         return n;
       },
       "xattr name"},
      {"xattr name too long",
       [] {
         pb::Node n = File("f", 0);
         n.add_xattrs()->set_name(std::string(kMaxXattrNameSize + 1, 'x'));
         return n;
       },
       "xattr name"},
      {"xattr value too large",
       [] {
         pb::Node n = File("f", 0);
         pb::Xattr* x = n.add_xattrs();
         x->set_name("user.big");
         x->set_value(std::string(kMaxXattrValueSize + 1, 'v'));
         return n;
       },
       "xattr value"},
      {"too many xattrs",
       [] {
         pb::Node n = File("f", 0);
         for (int i = 0; i < 1025; ++i) n.add_xattrs()->set_name("user." + std::to_string(i));
         return n;
       },
       "too many xattrs"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    const pb::Node node = c.make();
    EXPECT_TRUE(HasCode(ValidateNode(node), StatusCode::kInvalidArgument));
    Result<pb::Tree> t = DecodeTree(Encode({Dir("a"), node, File("zz", 1)}), "some/dir");
    ASSERT_TRUE(HasCode(t.status(), StatusCode::kDataLoss));
    EXPECT_THAT(t.status().message(), HasSubstr(c.message));
    EXPECT_THAT(t.status().message(), HasSubstr("some/dir"));
    EXPECT_THAT(t.status().message(), HasSubstr("'" + node.name() + "'"))
        << "the message names the node";
  }
}

TEST(DecodeTreeTest, RejectsBytesThatAreNotATree) {
  const struct {
    const char* what;
    Bytes bytes;
  } kCases[] = {
      {"garbage", Bytes{0xff, 0xff, 0xff, 0xff}},
      {"truncated length-delimited node", Bytes{0x0a, 0x10, 0x0a, 0x01}},
      {"invalid wire type", Bytes{0x0f, 0x00}},
      {"end of a group that never started", Bytes{0x0c}},
      {"node with a truncated name", Bytes{0x0a, 0x03, 0x0a, 0x05, 'a'}},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    EXPECT_TRUE(HasCode(DecodeTree(c.bytes, "w").status(), StatusCode::kDataLoss));
  }
}

TEST(TreeWriterTest, AppendedNodesDecodeToTheSameTree) {
  pb::Node big = File("big", 0);
  big.clear_content();
  uint64_t total = 0;
  for (int i = 0; i < 600; ++i) {  // > 16 KiB: a three-byte length prefix
    AddChunk(big, 1000 + static_cast<uint32_t>(i), static_cast<char>('A' + i % 26));
    total += 1000 + static_cast<uint64_t>(i);
  }
  big.set_size(total);
  pb::Node xattrs = File("x", 0);
  pb::Xattr* x = xattrs.add_xattrs();
  x->set_name("user.k");
  x->set_value(std::string(200, 'v'));  // > 127 bytes: a two-byte length prefix
  const std::vector<pb::Node> nodes = {File(".hidden", 5),
                                       big,
                                       Dir("dir"),
                                       File("line\nfeed", 1),
                                       Symlink("ln", "../target"),
                                       xattrs,
                                       File(std::string(255, 'y'), 0),
                                       File("\xc3\x28 invalid", 2)};

  Bytes out;
  for (const pb::Node& n : nodes) TreeWriter::AppendNode(n, out);
  EXPECT_EQ(out, Encode(nodes)) << "the writer's bytes are the protobuf encoding of a Tree";
  Result<pb::Tree> t = DecodeTree(out, "written");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->nodes_size(), static_cast<int>(nodes.size()));
  for (size_t i = 0; i < nodes.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(t->nodes(static_cast<int>(i)), nodes[i])) << i;
  }
}

TEST(TreeWriterTest, LengthPrefixIsRightAtEveryNodeSize) {
  // Node sizes crossing the one- and two-byte varint boundaries (127/128).
  for (size_t len = 1; len <= kMaxNameSize; ++len) {
    SCOPED_TRACE("name length " + std::to_string(len));
    const pb::Node n = File(std::string(len, 'q'), 0);
    Bytes out;
    TreeWriter::AppendNode(n, out);
    ASSERT_EQ(out, Encode({n}));
  }
}

}  // namespace
}  // namespace ferry::snapshot
