"""Redis key names as the daemons write them (docs/keys.md), for tests that look inside Redis."""


def sess_acct(account):
    return "sess:{%s}:acct" % account


def sess_epoch(account):
    return "sess:{%s}:epoch" % account


def sess_rec(account, sid):
    return "sess:{%s}:s:%s" % (account, sid)


def sess_rec_pattern(account):
    return "sess:{%s}:s:*" % account


def sess_nick(norm):
    return "sess:nick:%s" % norm


def sess_inst(instance):
    return "sess:inst:%s" % instance


def revoked_sid(sid):
    return "auth:{revoked}:sid:%s" % sid


def revoked_acct(account):
    return "auth:{revoked}:acct:%s" % account


REVOKED_LOADED = "auth:{revoked}:loaded"
