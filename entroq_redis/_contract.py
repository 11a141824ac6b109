"""The Lua contract's version and limits, mirrored for early, clear client-side errors.

The scripts enforce the same limits themselves (other languages call them directly);
tests/test_lua_contract.py checks that these numbers match the scripts.
"""

CONTRACT_VERSION = "3"

MAX_ITEMS_PER_MODIFY = 1000
MAX_QUEUES_PER_CLAIM = 1000
# Tasks one claim call takes at most (claim.lua's slots, contract 3).
MAX_CLAIM_SLOTS = 1000
MAX_PAGE = 1000
MAX_MATCHERS = 1000
MAX_ID_BYTES = 64
MAX_QUEUE_BYTES = 1024
MAX_CLAIMANT_BYTES = 128
MAX_VALUE_BYTES = 16 * 1024 * 1024
MAX_ERR_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_DURATION_MS = 31_622_400_000
MAX_AT_MS = 99_999_999_999_999
MAX_INT32 = 2**31 - 1

SCRIPT_NAMES = (
    "claim",
    "claim_id",
    "modify",
    "tasks",
    "queues",
    "time",
    "docs",
    "claim_docs",
    "claim_doc_sets",
    "namespaces",
)

# The document store (contract 2): byte lengths of a doc's names; contents share the value
# limits above (MAX_VALUE_BYTES each, MAX_TOTAL_BYTES with the task values and errs).
MAX_DOC_NAMESPACE_BYTES = 1024
MAX_DOC_ID_BYTES = 256
MAX_DOC_KEY_BYTES = 1024
# Doc sets per claim_doc_sets call; the docs one doc claim reads (claim_docs: of the key;
# claim_doc_sets: the members of all its sets together) are at most MAX_PAGE.
MAX_DOC_SETS = 1000
