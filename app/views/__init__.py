"""One module per page of the workbench; each reads like the page it draws."""
