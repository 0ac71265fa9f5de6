// A small flag parser for the `vidfarm` binary: --name value, --name=value, -x value, --bool,
// --no-bool, and every flag may also come from the environment as VIDFARM_<NAME> (dashes become
// underscores), like llama.cpp's set_env. The command line wins over the environment.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"

namespace vidfarm::cli {

class FlagSet {
 public:
  FlagSet(std::string usage, std::string summary);

  void String(const std::string& name, char short_name, std::string* out, const std::string& help);
  void Int(const std::string& name, char short_name, int64_t* out, const std::string& help);
  void Uint64(const std::string& name, char short_name, uint64_t* out, const std::string& help);
  void Double(const std::string& name, char short_name, double* out, const std::string& help);
  void Bool(const std::string& name, char short_name, bool* out, const std::string& help);
  // Free text printed after the flag list (examples, notes).
  void Epilog(std::string text) { epilog_ = std::move(text); }

  // Parses args (without the program and command names). Non-flag words go to *positional.
  // "--" ends flags. Sets help_requested() for -h/--help instead of failing.
  Status Parse(const std::vector<std::string>& args, std::vector<std::string>* positional);
  bool help_requested() const { return help_requested_; }
  // "--steps", or "--steps (from VIDFARM_STEPS)" when the value came from the environment: for
  // error messages about a flag's value.
  std::string Describe(const std::string& name) const;
  std::string Help() const;

 private:
  enum class Kind { kString, kInt, kUint64, kDouble, kBool };
  struct Flag {
    std::string name;
    char short_name;
    Kind kind;
    void* target;
    std::string help;
    std::string default_text;
    bool from_env = false;
  };
  void Add(const std::string& name, char short_name, Kind kind, void* target,
           const std::string& help, std::string default_text);
  Status Assign(const Flag& flag, const std::string& value, const std::string& origin);
  const Flag* Find(const std::string& name) const;
  Flag* Find(const std::string& name) {
    return const_cast<Flag*>(static_cast<const FlagSet*>(this)->Find(name));
  }
  Flag* FindShort(char c);
  static std::string EnvName(const std::string& name);

  std::string usage_;
  std::string summary_;
  std::string epilog_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// "1,2,4,8" → {1,2,4,8}; errors start with `what` (e.g. FlagSet::Describe's text).
Result<std::vector<int64_t>> ParseIntList(const std::string& text, const std::string& what);
Result<std::vector<double>> ParseDoubleList(const std::string& text, const std::string& what);

}  // namespace vidfarm::cli
