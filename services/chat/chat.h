/* wy-chat: chat channels, membership, moderation and the chat log. */
#ifndef CHAT_H
#define CHAT_H

#include "wy_daemon.h"

extern const wy_daemon_spec_t chat_daemon_spec;

#endif
