/*
 * etz_original_dst: recovers the destination a connection had before iptables REDIRECT/DNAT
 * rewrote it. Node exposes no getsockopt(), so the outbound and inbound listeners ask the
 * kernel's conntrack entry through SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6).
 *
 * JS: originalDst(fd: number, ipv6: boolean) -> [address: string, port: number] | number
 * A number is returned instead of throwing on failure (the positive errno): the caller treats
 * "not redirected" (ENOENT), "not TCP/not tracked" (ENOPROTOOPT) and friends alike, and a
 * request path should not pay for exception construction.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* From <linux/netfilter_ipv4.h> / <linux/netfilter_ipv6/ip6_tables.h>; defined here so the
 * build does not depend on kernel headers being installed. Both are 80 in every kernel. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), "ETZ_ERR_INTERNAL", "N-API call failed: " #call); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static napi_value make_errno(napi_env env, int err) {
  napi_value v;
  CHECK(env, napi_create_int32(env, err, &v));
  return v;
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "originalDst(fd, ipv6) takes two arguments");
    return NULL;
  }
  int32_t fd;
  bool ipv6;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "fd must be a non-negative integer");
    return NULL;
  }
  if (napi_get_value_bool(env, argv[1], &ipv6) != napi_ok) {
    napi_throw_type_error(env, NULL, "ipv6 must be a boolean");
    return NULL;
  }

  char text[INET6_ADDRSTRLEN];
  int port;
  if (ipv6) {
    struct sockaddr_in6 sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa, &len) != 0) return make_errno(env, errno);
    if (inet_ntop(AF_INET6, &sa.sin6_addr, text, sizeof text) == NULL) return make_errno(env, errno);
    port = ntohs(sa.sin6_port);
  } else {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) != 0) return make_errno(env, errno);
    if (inet_ntop(AF_INET, &sa.sin_addr, text, sizeof text) == NULL) return make_errno(env, errno);
    port = ntohs(sa.sin_port);
  }

  napi_value result, address, port_value;
  CHECK(env, napi_create_array_with_length(env, 2, &result));
  CHECK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address));
  CHECK(env, napi_create_int32(env, port, &port_value));
  CHECK(env, napi_set_element(env, result, 0, address));
  CHECK(env, napi_set_element(env, result, 1, port_value));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  CHECK(env, napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "originalDst", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
