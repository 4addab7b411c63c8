#include "meterstream/connectors/files/files.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "fmt/format.h"

namespace meterstream::detail {

namespace {

Status io_error(const std::string& what, const std::string& path) {
  return absl::UnavailableError(fmt::format("{} '{}': {}", what, path, std::strerror(errno)));
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
      if (len > 0 && buf[len - 1] == '\n') --len;
      if (len > 0 && buf[len - 1] == '\r') --len;
      lines.emplace_back(buf, len);
      ++line_;
    }
    std::free(buf);
    return more;
  }
  std::size_t line_number() const override { return line_; }

 private:
  std::string path_;
  std::FILE* f_;
  std::size_t line_ = 0;
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

StatusOr<std::unique_ptr<LineReader>> LineReader::open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return io_error("cannot open input file", path);
  return std::unique_ptr<LineReader>(std::make_unique<FileLineReader>(path, f));
}

StatusOr<std::shared_ptr<SharedLineFile>> SharedLineFile::create(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return io_error("cannot create output file", path);
  return std::shared_ptr<SharedLineFile>(std::make_shared<FileLineWriter>(path, f));
}

}  // namespace meterstream::detail
