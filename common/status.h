// Errors are values: absl::Status / absl::StatusOr, with two helper macros.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define R1_CONCAT_INNER(a, b) a##b
#define R1_CONCAT(a, b) R1_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` is not OK.
#define R1_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::absl::Status r1_status_ = (expr);          \
    if (!r1_status_.ok()) return r1_status_;     \
  } while (0)

// `R1_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a StatusOr or returns its error.
#define R1_ASSIGN_OR_RETURN(lhs, expr) \
  R1_ASSIGN_OR_RETURN_IMPL(R1_CONCAT(r1_statusor_, __LINE__), lhs, expr)
#define R1_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
