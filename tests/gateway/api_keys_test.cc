#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "common/api_keys.h"

namespace r1 {
namespace {

TEST(ApiKeys, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(ApiKeys, BearerHeader) {
  std::vector<std::string> keys = {"k1", "secret-2"};
  EXPECT_TRUE(Authorized("Bearer k1", keys));
  EXPECT_TRUE(Authorized("bearer secret-2", keys));
  EXPECT_FALSE(Authorized("Bearer k2", keys));
  EXPECT_FALSE(Authorized("Bearer ", keys));
  EXPECT_FALSE(Authorized("k1", keys));
  EXPECT_FALSE(Authorized("Basic k1", keys));
  EXPECT_FALSE(Authorized("", keys));
}

TEST(ApiKeys, LoadFile) {
  std::string path = testing::TempDir() + "/keys.txt";
  std::ofstream(path) << "# comment\n\n  key-one  \r\nkey-two\n";
  auto keys = LoadKeyFile(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(*keys, (std::vector<std::string>{"key-one", "key-two"}));
  std::ofstream(path) << "# only a comment\n";
  EXPECT_FALSE(LoadKeyFile(path).ok());
  auto missing = LoadKeyFile(path + ".missing", "token file");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("token file"), std::string_view::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace r1
