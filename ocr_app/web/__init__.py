"""The public web pages: the upload page at / and sign-in."""
