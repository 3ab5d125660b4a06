// gtest main for every r1serve test binary: points R1_SOURCE_DIR and R1_BIN_DIR at this build
// (unless the environment already says otherwise), then runs the tests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

int main(int argc, char** argv) {
  setenv("R1_SOURCE_DIR", R1_SOURCE_DIR_DEFAULT, /*overwrite=*/0);
  setenv("R1_BIN_DIR", R1_BIN_DIR_DEFAULT, /*overwrite=*/0);
  ::testing::InitGoogleMock(&argc, argv);
  return RUN_ALL_TESTS();
}
