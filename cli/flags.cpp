#include "flags.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace vidfarm::cli {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

Result<int64_t> ToInt(const std::string& text) {
  std::string t = Trim(text);
  if (t.empty()) return Status::InvalidArgument("empty number");
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (errno != 0 || end == t.c_str() || *end != '\0') {
    return Status::InvalidArgument(fmt::format("'{}' is not an integer", text));
  }
  return static_cast<int64_t>(v);
}

Result<double> ToDouble(const std::string& text) {
  std::string t = Trim(text);
  if (t.empty()) return Status::InvalidArgument("empty number");
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (errno != 0 || end == t.c_str() || *end != '\0') {
    return Status::InvalidArgument(fmt::format("'{}' is not a number", text));
  }
  return v;
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) parts.push_back(item);
  return parts;
}

}  // namespace

FlagSet::FlagSet(std::string usage, std::string summary)
    : usage_(std::move(usage)), summary_(std::move(summary)) {}

void FlagSet::Add(const std::string& name, char short_name, Kind kind, void* target,
                  const std::string& help, std::string default_text) {
  flags_.push_back({name, short_name, kind, target, help, std::move(default_text)});
}

void FlagSet::String(const std::string& name, char s, std::string* out, const std::string& help) {
  Add(name, s, Kind::kString, out, help, out->empty() ? "" : *out);
}
void FlagSet::Int(const std::string& name, char s, int64_t* out, const std::string& help) {
  Add(name, s, Kind::kInt, out, help, std::to_string(*out));
}
void FlagSet::Uint64(const std::string& name, char s, uint64_t* out, const std::string& help) {
  Add(name, s, Kind::kUint64, out, help, std::to_string(*out));
}
void FlagSet::Double(const std::string& name, char s, double* out, const std::string& help) {
  Add(name, s, Kind::kDouble, out, help, fmt::format("{}", *out));
}
void FlagSet::Bool(const std::string& name, char s, bool* out, const std::string& help) {
  Add(name, s, Kind::kBool, out, help, *out ? "true" : "");
}

std::string FlagSet::EnvName(const std::string& name) {
  std::string env = "VIDFARM_";
  for (char c : name) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

FlagSet::Flag* FlagSet::FindShort(char c) {
  for (Flag& f : flags_) {
    if (f.short_name != 0 && f.short_name == c) return &f;
  }
  return nullptr;
}

Status FlagSet::Assign(const Flag& flag, const std::string& value, const std::string& origin) {
  auto bad = [&](const Status& st) {
    return Status::InvalidArgument(fmt::format("{} --{}: {}", origin, flag.name, st.message()));
  };
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.target) = value;
      return Status::OK();
    case Kind::kInt: {
      auto v = ToInt(value);
      if (!v.ok()) return bad(v.status());
      *static_cast<int64_t*>(flag.target) = *v;
      return Status::OK();
    }
    case Kind::kUint64: {
      auto v = ToInt(value);
      if (!v.ok()) return bad(v.status());
      if (*v < 0) return bad(Status::InvalidArgument("must not be negative"));
      *static_cast<uint64_t*>(flag.target) = static_cast<uint64_t>(*v);
      return Status::OK();
    }
    case Kind::kDouble: {
      auto v = ToDouble(value);
      if (!v.ok()) return bad(v.status());
      *static_cast<double*>(flag.target) = *v;
      return Status::OK();
    }
    case Kind::kBool: {
      std::string v = Trim(value);
      for (char& c : v) c = static_cast<char>(std::tolower(c));
      if (v == "1" || v == "true" || v == "yes" || v == "on" || v.empty()) {
        *static_cast<bool*>(flag.target) = true;
      } else if (v == "0" || v == "false" || v == "no" || v == "off") {
        *static_cast<bool*>(flag.target) = false;
      } else {
        return bad(Status::InvalidArgument(fmt::format("'{}' is not a boolean", value)));
      }
      return Status::OK();
    }
  }
  return Status::Internal("unknown flag kind");
}

Status FlagSet::Parse(const std::vector<std::string>& args, std::vector<std::string>* positional) {
  // Environment first, so the command line overrides it.
  for (Flag& f : flags_) {
    const char* env = std::getenv(EnvName(f.name).c_str());
    if (env == nullptr) continue;
    VF_RETURN_NOT_OK(Assign(f, env, "environment " + EnvName(f.name) + " for"));
    f.from_env = true;
  }
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (flags_done || a.size() < 2 || a[0] != '-' ||
        (a.size() >= 2 && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))) {
      positional->push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      help_requested_ = true;
      continue;
    }
    Flag* flag = nullptr;
    std::string value;
    bool has_value = false;
    if (a[1] == '-') {
      std::string name = a.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      flag = Find(name);
      if (flag == nullptr && name.rfind("no-", 0) == 0) {
        Flag* neg = Find(name.substr(3));
        if (neg != nullptr && neg->kind == Kind::kBool && !has_value) {
          *static_cast<bool*>(neg->target) = false;
          neg->from_env = false;
          continue;
        }
      }
      if (flag == nullptr) {
        return Status::InvalidArgument(fmt::format("unknown flag --{} (see --help)", name));
      }
    } else {
      if (a.size() != 2) {
        return Status::InvalidArgument(fmt::format("unknown flag {} (see --help)", a));
      }
      flag = FindShort(a[1]);
      if (flag == nullptr) {
        return Status::InvalidArgument(fmt::format("unknown flag {} (see --help)", a));
      }
    }
    if (flag->kind == Kind::kBool) {
      VF_RETURN_NOT_OK(Assign(*flag, has_value ? value : "true", "flag"));
      flag->from_env = false;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return Status::InvalidArgument(fmt::format("flag --{} needs a value", flag->name));
      }
      value = args[++i];
    }
    VF_RETURN_NOT_OK(Assign(*flag, value, "flag"));
    flag->from_env = false;
  }
  return Status::OK();
}

std::string FlagSet::Describe(const std::string& name) const {
  const Flag* f = Find(name);
  if (f != nullptr && f->from_env) return fmt::format("--{} (from {})", name, EnvName(name));
  return "--" + name;
}

std::string FlagSet::Help() const {
  std::string out = fmt::format("usage: {}\n\n{}\n\nflags:\n", usage_, summary_);
  for (const Flag& f : flags_) {
    std::string lhs = f.short_name ? fmt::format("  -{}, --{}", f.short_name, f.name)
                                   : fmt::format("      --{}", f.name);
    if (f.kind != Kind::kBool) lhs += " VALUE";
    std::string rhs = f.help;
    if (!f.default_text.empty()) rhs += fmt::format(" (default: {})", f.default_text);
    rhs += fmt::format(" [env {}]", EnvName(f.name));
    if (lhs.size() < 30) {
      out += fmt::format("{:<30}{}\n", lhs, rhs);
    } else {
      out += fmt::format("{}\n{:<30}{}\n", lhs, "", rhs);
    }
  }
  out += "  -h, --help                  this text\n";
  if (!epilog_.empty()) out += "\n" + epilog_ + "\n";
  return out;
}

Result<std::vector<int64_t>> ParseIntList(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  for (const std::string& part : SplitComma(text)) {
    auto v = ToInt(part);
    if (!v.ok()) return Status::InvalidArgument(fmt::format("{}: {}", what, v.status().message()));
    out.push_back(*v);
  }
  if (out.empty()) return Status::InvalidArgument(fmt::format("{}: empty list", what));
  return out;
}

Result<std::vector<double>> ParseDoubleList(const std::string& text, const std::string& what) {
  std::vector<double> out;
  for (const std::string& part : SplitComma(text)) {
    auto v = ToDouble(part);
    if (!v.ok()) return Status::InvalidArgument(fmt::format("{}: {}", what, v.status().message()));
    out.push_back(*v);
  }
  if (out.empty()) return Status::InvalidArgument(fmt::format("{}: empty list", what));
  return out;
}

}  // namespace vidfarm::cli
