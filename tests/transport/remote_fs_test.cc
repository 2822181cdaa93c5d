// Transport tests of RemoteFs: a real client Messenger talking over loopback UCX to a test peer that plays
// both lego-gm (c2g.vnode_lookup) and a vNode's smon (the FS opcodes), so that each test chooses what the
// peer answers.
#include "messaging/remote_fs.h"

#include <atomic>
#include <cerrno>

#include <gtest/gtest.h>

#include "protocol/wire.h"

namespace lego::msg {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Messenger> Make(const std::string& name) {
  MessengerOptions o;
  o.name = name;
  auto m = Messenger::Create(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m.value());
}

class RemoteFsTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kVnode = 7;
  void SetUp() override {
    peer_ = Make("peer");
    peer_->Handle(proto::kVnodeLookup, [this](const Incoming&, Responder r) {
      proto::VnodeRecord v;
      v.fixed.id = kVnode;
      v.fixed.smon_alive = 1;
      v.name = "v";
      v.smon_addr = peer_->listen_address().ToString();
      r.Reply(proto::EncodeVnodeRecord(v));
    });
    // getattr: refused with Busy while busy_left_ > 0, then answered.
    peer_->Handle(proto::FsOpcode(proto::FsOp::kGetattr), [this](const Incoming&, Responder r) {
      getattrs_.fetch_add(1);
      if (busy_left_.fetch_sub(1) > 0)
        return r.Error(Status(StatusCode::kBusy, "refused rather than handled out of order"));
      proto::FsReply reply;
      reply.f.flags = proto::kFsReplyAttr;
      reply.f.attr.ino = 42;
      r.Reply(proto::EncodeFsReply(proto::FsOp::kGetattr, reply));
    });
    ASSERT_TRUE(peer_->Listen({"127.0.0.1", 0}).ok());
    ASSERT_TRUE(peer_->Start().ok());
    client_ = Make("client");
    ASSERT_TRUE(client_->Start().ok());
  }
  void TearDown() override {
    client_->Shutdown();
    peer_->Shutdown();
  }
  proto::FsReply Getattr(RemoteFs& rfs) {
    proto::FsRequest req;
    req.op = proto::FsOp::kGetattr;
    req.f.vnode = kVnode;
    req.path = "f";
    return rfs.Execute(req);
  }

  std::unique_ptr<Messenger> peer_, client_;
  std::atomic<int> busy_left_{0};
  std::atomic<int> getattrs_{0};
};

// A request refused unread (Busy) never ran: it is sent again, and the program gets the real answer.
TEST_F(RemoteFsTest, ARequestRefusedAsBusyIsSentAgain) {
  RemoteFs rfs(*client_, peer_->listen_address(), RemoteFsOptions{RemoteFsOptions::Target::kSmon, 5000ms});
  busy_left_ = 3;
  auto reply = Getattr(rfs);
  EXPECT_EQ(reply.err(), 0);
  EXPECT_EQ(reply.f.attr.ino, 42u);
  EXPECT_EQ(getattrs_.load(), 4);
  EXPECT_EQ(rfs.busy_retried(), 1u);  // one request that was refused, however often
  EXPECT_EQ(rfs.transport_errors(), 0u);
}

// A peer that stays busy past the request's timeout: EIO within the timeout, not a hang.
TEST_F(RemoteFsTest, APeerBusyPastTheTimeoutGivesEio) {
  RemoteFs rfs(*client_, peer_->listen_address(), RemoteFsOptions{RemoteFsOptions::Target::kSmon, 500ms});
  busy_left_ = 1 << 30;
  const auto t0 = std::chrono::steady_clock::now();
  auto reply = Getattr(rfs);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(reply.err(), EIO);
  EXPECT_LT(took, 1500ms);
  EXPECT_GT(getattrs_.load(), 3);  // the pause grows, but it did try again
  EXPECT_EQ(rfs.transport_errors(), 1u);
}

}  // namespace
}  // namespace lego::msg
