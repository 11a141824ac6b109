# Example authorization policy for entroq-redis (and EntroQ: same input, same answer).
#
# Use it as is with `entroq-redis serve --authz rego --policy policy.rego --policy-data data.json`,
# or load both files into an OPA server and run `--authz opahttp`. Needs OPA >= 0.59 (rego.v1).
# data.json's JWT secret and tokens are published (README.md here says how to set your own):
# `serve --authz rego` refuses to start with any of them, found by value in whatever data file it
# is given, unless `--allow-example-credentials` (a local demo). With `--authz opahttp` the service
# cannot see OPA's data, so nothing refuses them there: never load this data.json into OPA as is.
#
# Input (one request):   {"authz": {"type": "Bearer", "credentials": "..."},
#                         "queues": [{"exact": "/q", "actions": ["CLAIM"]}, ...],
#                         "namespaces": [{"exact": "accounts", "actions": ["READ"]}, ...],
#                         "namespace": "eq", "claimant_id": "alice#3f2a"}
#                        (namespace and claimant_id are entroq-redis's; claimant_id is there on
#                        claims, doc claims and modifies that name a claimant; namespaces, the
#                        *doc* namespaces a document-store call touches, only on such calls)
# Answer (this package): allow (bool), failed (the queue entries not granted, with the actions
#                        left), errors (strings), authenticated (bool; false -> HTTP 401), and
#                        for entroq-redis: user (named in its audit log), readable (the
#                        caller's READ grants, so listings need not ask about every queue),
#                        failed_namespaces and readable_namespaces (the same for doc
#                        namespaces; entroq-redis refuses every doc call of a policy that does
#                        not define failed_namespaces).
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
# Doc namespaces (EntroQ's document store): data.entroq.users[user].namespaces, the same shape
# and actions (READ lists docs and namespace stats, CLAIM claims docs and doc sets, INSERT,
# CHANGE and DELETE a modify's doc items); no doc namespace is granted by default.
#
# Claimant binding: a lease belongs to a claimant ID, and whoever sends that ID may renew,
# change or delete the task it holds. A claimant ID of the form "<user>#<anything>" may only
# be used by <user>, so nobody can act as another user's workers by naming "bob#1". With
# data.entroq.claimants.require_user_prefix = true every claimant ID must have that form (EntroQ
# clients that pick random UUIDs are then refused). Users with "admin": true are exempt.
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

# The grants that let the caller READ, as {"exact"} / {"prefix"} specs. entroq-redis filters
# listings with them (asking about exactly these specs once, then matching names itself), so
# this must list every grant `failed` would accept for READ; one left out only hides queues.
reads(grant) if "READ" in grant.actions

reads(grant) if count(wildcards & {action | some action in grant.actions}) > 0

readable contains {"exact": grant.exact} if {
	some grant in grants
	reads(grant)
	is_string(grant.exact)
}

readable contains {"prefix": grant.prefix} if {
	some grant in grants
	reads(grant)
	is_string(grant.prefix)
}

# Doc namespaces: the same rules over the input's "namespaces" and the user's namespace grants.
namespace_grants contains grant if {
	some grant in data.entroq.users[user].namespaces
}

failed_namespaces contains entry if {
	some want in input.namespaces
	granted := {action | some grant in namespace_grants; covers(grant, want); some action in grant.actions}
	count(granted & wildcards) == 0
	left := {action | some action in want.actions; not granted[action]}
	count(left) > 0
	entry := object.union(object.remove(want, ["actions"]), {"actions": sort(left)})
}

readable_namespaces contains {"exact": grant.exact} if {
	some grant in namespace_grants
	reads(grant)
	is_string(grant.exact)
}

readable_namespaces contains {"prefix": grant.prefix} if {
	some grant in namespace_grants
	reads(grant)
	is_string(grant.prefix)
}

own_claimant_prefix := concat("", [user, "#"])

admin if data.entroq.users[user].admin == true

# A claimant ID that names a user ("<user>#...") must name the caller; optionally
# (data.entroq.claimants.require_user_prefix) every claimant ID must.
claimant_bound if contains(input.claimant_id, "#")

claimant_bound if {
	data.entroq.claimants.require_user_prefix == true
	input.claimant_id != ""
}

claimant_mismatch if {
	claimant_bound
	not startswith(input.claimant_id, own_claimant_prefix)
	not admin
}

errors contains message if {
	count(failed) + count(failed_namespaces) > 0
	authenticated
	message := concat("", ["user: ", user])
}

errors contains message if {
	authenticated
	claimant_mismatch
	message := concat("", [
		"claimant ID \"", input.claimant_id, "\" may not be used by ", user,
		" (", user, "'s claimant IDs start with \"", own_claimant_prefix, "\")",
	])
}

default allow := false

allow if {
	authenticated
	count(failed) == 0
	count(failed_namespaces) == 0
	not claimant_mismatch
}
