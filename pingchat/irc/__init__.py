"""The IRC gateway: any IRC client joins the same chat world."""
