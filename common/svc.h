/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service manager's side of a daemon (libsystemd's sd_notify): readiness,
 * status, stopping and the watchdog. Every call is a no-op when the daemon was
 * not started by a service manager (NOTIFY_SOCKET unset), so the daemons call
 * them unconditionally.
 */
#ifndef NAVE_SVC_H
#define NAVE_SVC_H

#include <stdint.h>

/* READY=1 with a STATUS= line: the daemon serves from now on. */
void svc_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* STATUS= alone. */
void svc_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1: a reload began; svc_ready() says it is over. */
void svc_reloading(void);
/* STOPPING=1: draining, then exit. */
void svc_stopping(void);
/*
 * The watchdog period asked for by the unit (WatchdogSec=), in ms; 0 when none.
 * Ping (svc_watchdog) at least twice per period.
 */
uint64_t svc_watchdog_ms(void);
void svc_watchdog(void);

#endif
