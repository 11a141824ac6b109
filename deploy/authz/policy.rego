# Example authorization policy for entroq-redis (and EntroQ: same input, same answer).
#
# Use it as is with `entroq-redis serve --authz rego --policy policy.rego --policy-data data.json`,
# or load both files into an OPA server and run `--authz opahttp`. Needs OPA >= 0.59 (rego.v1).
#
# Input (one request):   {"authz": {"type": "Bearer", "credentials": "..."},
#                         "queues": [{"exact": "/q", "actions": ["CLAIM"]}, ...]}
# Answer (this package): allow (bool), failed (the queue entries not granted, with the actions
#                        left), errors (strings), and authenticated (bool; false -> HTTP 401).
#
# Who is calling, from the bearer token:
#   - a JWT (three dot-separated parts), verified with io.jwt.decode_verify against
#     data.entroq.jwt ({"secret": ...} for HS256 or {"cert": PEM} for RS256/ES256, plus
#     optional "iss" and "aud"); its signature, expiry (required) and not-before are checked,
#     and its "sub" is the user. Never decode a token without verifying it.
#   - any other token: looked up by its SHA-256 (hex) in data.entroq.tokens, so the data
#     holds no usable token.
# What they may do: data.entroq.users[user].queues, a list of {"exact" | "prefix", "actions"}
# (actions CLAIM, INSERT, CHANGE, DELETE, READ, or "*" / "ALL" / "ANY" for all), plus, as in
# EntroQ's example, everything under "/ns=user/<user>/". End prefixes with "/": the prefix
# "/alice" also covers "/alice2".
package entroq.authz

import rego.v1

bearer := input.authz.credentials if input.authz.type == "Bearer"

is_jwt if count(split(bearer, ".")) == 3

# The JWT's verified subject.
user := payload.sub if {
	is_jwt
	constraints := object.filter(data.entroq.jwt, ["cert", "secret", "iss", "aud"])
	[valid, _, payload] := io.jwt.decode_verify(bearer, constraints)
	valid
	is_number(payload.exp) # decode_verify checks exp only when present: require it
	is_string(payload.sub)
	payload.sub != ""
}

# An opaque token's owner.
user := data.entroq.tokens[crypto.sha256(bearer)] if not is_jwt

default authenticated := false

authenticated if user

grants contains grant if {
	some grant in data.entroq.users[user].queues
}

grants contains {"prefix": concat("", ["/ns=user/", user, "/"]), "actions": ["ALL"]} if user

wildcards := {"*", "ALL", "ANY"}

covers(grant, want) if want.exact == grant.exact

covers(grant, want) if startswith(want.exact, grant.prefix)

covers(grant, want) if startswith(want.prefix, grant.prefix)

# Each requested entry with the actions no grant covers (EntroQ's shape: the entry without
# its actions, plus the actions left).
failed contains entry if {
	some want in input.queues
	granted := {action | some grant in grants; covers(grant, want); some action in grant.actions}
	count(granted & wildcards) == 0
	left := {action | some action in want.actions; not granted[action]}
	count(left) > 0
	entry := object.union(object.remove(want, ["actions"]), {"actions": sort(left)})
}

errors contains message if {
	count(failed) > 0
	authenticated
	message := concat("", ["user: ", user])
}

default allow := false

allow if {
	authenticated
	count(failed) == 0
}
