// The crmhub panel on Case and Contact pages. It frames the CrmhubCanvas Visualforce page, whose Canvas app
// Salesforce signs (signed request, POST) for crmhub with the open record's id: crmhub checks the signature
// with the connected app's consumer secret before showing anything.
import { LightningElement, api } from "lwc";

export default class CrmhubPanel extends LightningElement {
    @api recordId;

    get pageUrl() {
        return "/apex/CrmhubCanvas?recordId=" + encodeURIComponent(this.recordId || "");
    }
}
