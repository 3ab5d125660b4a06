// Unicode NFC normalisation (the "NFC" normalizer of tokenizer.json).
#pragma once

#include <string>
#include <string_view>

namespace r1::tokenizer {

// True when `s` (valid UTF-8) is certainly in NFC already: a quick check that lets almost
// all text skip the full algorithm.
bool IsNfcQuick(std::string_view s);

// Appends the NFC form of `s` (valid UTF-8) to *out.
void AppendNfc(std::string_view s, std::string* out);

// The Unicode version the tables were made from.
const char* NfcUnicodeVersion();

}  // namespace r1::tokenizer
