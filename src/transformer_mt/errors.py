"""The one exception type for user mistakes.

The CLI turns a `UserError` into a single line on stderr and exit status 2; anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix (bad file, bad option, foreign checkpoint); message says how."""
