#include "meterstream/connectors/files/files.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>
#include <system_error>

#include "fmt/format.h"

#include "meterstream/connectors/detail/split_position.hpp"

namespace meterstream::detail {

namespace {

Status io_error(const std::string& what, const std::string& path) {
  return absl::UnavailableError(fmt::format("{} '{}': {}", what, path, std::strerror(errno)));
}

// Parses the whole of `text` as a decimal integer.
template <typename T>
bool parse_decimal(std::string_view text, T* out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *out, 10);
  return !text.empty() && ec == std::errc() && ptr == end;
}

class FileLineReader final : public LineReader {
 public:
  FileLineReader(std::string path, std::FILE* f) : path_(std::move(path)), f_(f) {}
  ~FileLineReader() override { std::fclose(f_); }

  StatusOr<bool> read_lines(std::vector<std::string>& lines, std::size_t max) override {
    char* buf = nullptr;
    std::size_t cap = 0;
    bool more = true;
    while (lines.size() < max) {
      errno = 0;
      const ssize_t n = getline(&buf, &cap, f_);
      if (n < 0) {
        if (std::ferror(f_)) {
          std::free(buf);
          return io_error("cannot read", path_);
        }
        more = false;
        break;
      }
      std::size_t len = static_cast<std::size_t>(n);
      offset_ += len;
      if (len > 0 && buf[len - 1] == '\n') --len;
      if (len > 0 && buf[len - 1] == '\r') --len;
      lines.emplace_back(buf, len);
      ++line_;
    }
    std::free(buf);
    return more;
  }
  std::size_t line_number() const override { return line_; }
  std::uint64_t offset() const override { return offset_; }

  Status seek(std::uint64_t offset, std::size_t line) override {
    struct stat st{};
    if (::fstat(fileno(f_), &st) != 0) return io_error("cannot stat", path_);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (offset > size) {
      return absl::InvalidArgumentError(
          fmt::format("offset {} is beyond the end of the file ({} bytes)", offset, size));
    }
    // Every line before `offset` ends with '\n' (the last line of the file may
    // lack it), so `offset` follows a '\n' unless it is 0 or the end.
    if (offset > 0 && offset < size) {
      char before = 0;
      if (::pread(fileno(f_), &before, 1, static_cast<off_t>(offset - 1)) != 1) {
        return io_error("cannot read", path_);
      }
      if (before != '\n') {
        return absl::InvalidArgumentError(
            fmt::format("offset {} is not at the start of a line", offset));
      }
    }
    // Each line takes at least one byte, and only offset 0 has no line before it.
    if ((offset == 0) != (line == 0) || line > offset) {
      return absl::InvalidArgumentError(
          fmt::format("{} lines cannot end at offset {}", line, offset));
    }
    if (::fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0) {
      return io_error("cannot seek in", path_);
    }
    offset_ = offset;
    line_ = line;
    return Status();
  }

 private:
  std::string path_;
  std::FILE* f_;
  std::size_t line_ = 0;
  std::uint64_t offset_ = 0;
};

class FileLineWriter final : public SharedLineFile {
 public:
  FileLineWriter(std::string path, std::FILE* f) : path_(std::move(path)), f_(f) {}
  ~FileLineWriter() override { std::fclose(f_); }

  Status append(const std::string& text) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::fwrite(text.data(), 1, text.size(), f_) != text.size()) {
      return io_error("cannot write", path_);
    }
    return Status();
  }
  Status flush() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::fflush(f_) != 0) return io_error("cannot flush", path_);
    return Status();
  }

 private:
  std::mutex mu_;
  std::string path_;
  std::FILE* f_;
};

}  // namespace

std::string encode_file_position(std::uint64_t offset, std::size_t line) {
  return fmt::format("{}:{}", offset, line);
}

Status seek_file_position(LineReader& reader, const std::string& split, std::string_view position) {
  const std::size_t colon = position.find(':');
  std::uint64_t offset = 0;
  std::size_t line = 0;
  if (colon == std::string_view::npos || !parse_decimal(position.substr(0, colon), &offset) ||
      !parse_decimal(position.substr(colon + 1), &line)) {
    return bad_position(split, position, "not a file position (<offset>:<line>)");
  }
  Status s = reader.seek(offset, line);
  if (s.code() == absl::StatusCode::kInvalidArgument) {
    return bad_position(split, position, std::string(s.message()));
  }
  return s;
}

StatusOr<std::unique_ptr<LineReader>> LineReader::open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    // A missing input is the caller's to fix: kNotFound, as for any other
    // missing thing; a refusal is kPermissionDenied.
    const int err = errno;
    const std::string msg = fmt::format("cannot open input file '{}': {}", path, std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  return std::unique_ptr<LineReader>(std::make_unique<FileLineReader>(path, f));
}

StatusOr<std::shared_ptr<SharedLineFile>> SharedLineFile::create(const std::string& path,
                                                                  bool append) {
  std::FILE* f = std::fopen(path.c_str(), append ? "ab" : "wb");
  if (f == nullptr) return io_error("cannot create output file", path);
  return std::shared_ptr<SharedLineFile>(std::make_shared<FileLineWriter>(path, f));
}

}  // namespace meterstream::detail
