#include "core/secret_bytes.h"

#include <gtest/gtest.h>

#include <type_traits>
#include <utility>

#include "core/bytes.h"

namespace ferry {
namespace {

Bytes Contents(const SecretBytes& s) { return Bytes(s.view().begin(), s.view().end()); }

static_assert(!std::is_copy_constructible_v<SecretBytes>);
static_assert(!std::is_copy_assignable_v<SecretBytes>);
static_assert(std::is_nothrow_move_constructible_v<SecretBytes>);
static_assert(std::is_nothrow_move_assignable_v<SecretBytes>);

TEST(SecretBytesTest, DefaultIsEmpty) {
  SecretBytes s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_TRUE(s.view().empty());
}

TEST(SecretBytesTest, SizedConstructorZeroFills) {
  SecretBytes s(33);
  ASSERT_EQ(s.size(), 33u);
  EXPECT_EQ(Contents(s), Bytes(33, 0));
}

TEST(SecretBytesTest, CopiesItsInputRatherThanAliasingIt) {
  Bytes source = {1, 2, 3, 4};
  SecretBytes s(source);
  source[0] = 9;
  EXPECT_EQ(Contents(s), (Bytes{1, 2, 3, 4}));
  EXPECT_NE(s.data(), source.data());
}

TEST(SecretBytesTest, MutableViewWritesThrough) {
  SecretBytes s(3);
  s.mutable_view()[1] = 7;
  EXPECT_EQ(Contents(s), (Bytes{0, 7, 0}));
}

TEST(SecretBytesTest, MoveConstructionLeavesSourceEmpty) {
  SecretBytes a(Bytes{5, 6, 7});
  const uint8_t* buffer = a.data();
  SecretBytes b(std::move(a));
  EXPECT_EQ(Contents(b), (Bytes{5, 6, 7}));
  EXPECT_EQ(b.data(), buffer);  // the buffer moved, it was not copied
  // NOLINTBEGIN(bugprone-use-after-move): checking the moved-from state is the point.
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_TRUE(a.view().empty());
  // NOLINTEND(bugprone-use-after-move)
}

TEST(SecretBytesTest, MoveAssignmentLeavesSourceEmptyAndReplacesTarget) {
  SecretBytes a(Bytes{1, 2});
  SecretBytes b(Bytes{9, 9, 9, 9});
  b = std::move(a);
  EXPECT_EQ(Contents(b), (Bytes{1, 2}));
  // NOLINTBEGIN(bugprone-use-after-move)
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.data(), nullptr);
  // NOLINTEND(bugprone-use-after-move)
}

TEST(SecretBytesTest, SelfMoveAssignmentKeepsTheBytes) {
  SecretBytes a(Bytes{4, 5, 6});
  SecretBytes& alias = a;  // via a reference, so the compiler does not flag a self-move
  a = std::move(alias);
  EXPECT_EQ(Contents(a), (Bytes{4, 5, 6}));
}

TEST(SecretBytesTest, MovedFromObjectCanBeReused) {
  SecretBytes a(Bytes{1});
  SecretBytes b(std::move(a));
  a = SecretBytes(Bytes{2, 3});  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(Contents(a), (Bytes{2, 3}));
  EXPECT_EQ(Contents(b), (Bytes{1}));
}

TEST(SecretBytesTest, CloneIsAnIndependentCopy) {
  SecretBytes a(Bytes{1, 2, 3});
  SecretBytes b = a.Clone();
  EXPECT_EQ(Contents(b), Contents(a));
  EXPECT_NE(b.data(), a.data());
  b.mutable_view()[0] = 42;
  EXPECT_EQ(Contents(a), (Bytes{1, 2, 3}));
  EXPECT_EQ(Contents(b), (Bytes{42, 2, 3}));
}

TEST(SecretBytesTest, CloneOfEmptyIsEmpty) {
  SecretBytes a;
  SecretBytes b = a.Clone();
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace ferry
